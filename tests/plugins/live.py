"""A stand-in pipeline writing the canonical store while the harness works (tests/pipeline.py), and the
helpers the live-production tests share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import toxiproxy
from tests.helpers import ROOT, kfm_maint
from tests.pipeline import Pipeline

RETIRED = "grain-elevators"  # the dataset the pipeline retires
CONSISTENCY = "opschecks/consistency"


def maint_ok(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``kfm-maint <args> --no-verify --json`` that must succeed: its JSON summary."""
    proc = kfm_maint(*args, "--no-verify", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def kill_sync_midway(owner_pg: Any, env: dict[str, str] | None = None) -> None:
    """Start ``kfm-maint sync --targets search,graph`` behind a slow search proxy and SIGKILL it while its ledger row
    says running: a run that dies mid-write, leaving whatever it had written."""
    with toxiproxy.proxy("slow-search", toxiproxy.upstream("search")) as proxy:
        proxy.toxic("latency", latency=300, jitter=0)  # every search request slow: the kill lands mid-run
        proc = subprocess.Popen([sys.executable, "-m", "maintenance.cli", "sync", "--targets", "search,graph",
                                 "--no-verify"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {}), "KFM_SEARCH__URL": f"http://127.0.0.1:{proxy.port}"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not owner_pg.scalar(
                "SELECT count(*) FROM kfm_ops.audit_ledger WHERE action = 'sync' AND outcome = 'running'"):
            time.sleep(0.05)
        time.sleep(1.0)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)


def failures(results: dict[str, Any]) -> dict[str, str]:
    """The checks of a run that neither passed nor were skipped, with the start of their message."""
    return {nodeid: r.message[:400] for nodeid, r in results.items() if r.outcome not in ("passed", "skipped")}


@pytest.fixture
def pipeline(kfm_settings: Any, catalog_restored: None) -> Iterator[Any]:
    """start(rate, seconds): a pipeline writing to the canonical store; the sample catalog is restored afterwards."""
    section = kfm_settings.postgis
    started: list[Pipeline] = []

    def start(rate: float, seconds: float, retire: str | None = RETIRED) -> Pipeline:
        run = Pipeline(section.write_dsn, section.write_password.get_secret_value(), rate=rate, seconds=seconds,
                       retire=retire)
        run.start()
        started.append(run)
        return run

    yield start
    for run in started:  # before catalog_restored loads the catalog again
        run.stop()
