"""Prometheus and the Pushgateway of devstack, in a throw-away stack of their own (its own ports and home)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.devstack.conftest import pid_alive, run_stack

pytestmark = pytest.mark.devstack


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def test_prometheus_scrapes_the_pushgateway_and_loads_the_rules(scratch_stack: dict[str, str]) -> None:
    env = scratch_stack
    up = run_stack("up", "prometheus", "pushgateway", env=env, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    prometheus = f"http://127.0.0.1:{env['DEVSTACK_PROMETHEUS_PORT']}"
    pushgateway = f"http://127.0.0.1:{env['DEVSTACK_PUSHGATEWAY_PORT']}"
    rows = {r["name"]: r for r in json.loads(run_stack("status", "--json", env=env).stdout)}
    assert rows["prometheus"]["up"] and rows["pushgateway"]["up"], rows
    config = (Path(env["DEVSTACK_HOME"]) / "prometheus" / "prometheus.yml").read_text()
    assert f"127.0.0.1:{env['DEVSTACK_PUSHGATEWAY_PORT']}" in config, "the scrape follows the stack's ports"

    request = urllib.request.Request(f"{pushgateway}/metrics/job/devstack-probe/environment/dev", method="PUT",
                                     data=b"# TYPE devstack_probe gauge\ndevstack_probe 42\n")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status in (200, 202)
    deadline = time.monotonic() + 30
    result: list = []
    while time.monotonic() < deadline and not result:
        result = _get(f"{prometheus}/api/v1/query?query=devstack_probe")["data"]["result"]
        time.sleep(0.5)
    assert result and result[0]["metric"]["job"] == "devstack-probe" and result[0]["value"][1] == "42", result
    groups = {g["name"] for g in _get(f"{prometheus}/api/v1/rules")["data"]["groups"]}
    assert groups == {"kfm-ops-checks", "kfm-ops-actions"}, "deploy/prometheus/kfm-ops.rules.yml is loaded"

    pids = rows["prometheus"]["pids"] + rows["pushgateway"]["pids"]
    down = run_stack("down", "prometheus", "pushgateway", env=env)
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(p) for p in pids)
