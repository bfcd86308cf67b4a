"""A scheduled run, started the way deploy/kubernetes/cronjob-opschecks.yaml starts it, on the local stack.

Three runs of the CronJob's command (healthy; with the search store's watermark a year
behind; healthy again) must leave:

- their series in Prometheus (scraped from the Pushgateway), and the live alerts for the failure;
- an alert that fires in ``promtool test rules`` fed with the failing run's own metrics;
- a history row set that ``kfm-maint report`` compares with the previous run (new, then
  recovered; ``--since``);
- an HTML page that headless Chromium renders with the failing check at the top.

Prometheus and the Pushgateway are configured services of the stack: when they are down,
these tests fail (the waits are bounded).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from devstack.config import load_config
from kfm_ops.stores.postgis import PostgisStore
from tests.helpers import ROOT, kfm_maint, stack_binary
from tests.plugins.faults import injected

pytestmark = [pytest.mark.devstack, pytest.mark.slow]

FRESH_SEARCH = "opschecks/consistency/test_cross_store.py::test_derived_store_is_fresh[search]"
WAIT = 45.0  # seconds: Prometheus scrapes and evaluates every second
T = TypeVar("T")

# the watermark moved back a year: the catalog's oldest change now waits for the store
BEHIND = re.compile(r"\b\d{4,}s behind the canonical store")

def cronjob() -> tuple[list[str], dict[str, str]]:
    """The CronJob container's arguments and environment, for the local stack."""
    manifest = yaml.safe_load((ROOT / "deploy/kubernetes/cronjob-opschecks.yaml").read_text())
    (container,) = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    return container["args"], env


def ports() -> tuple[str, str]:
    cfg = load_config()
    return f"http://127.0.0.1:{cfg['DEVSTACK_PROMETHEUS_PORT']}", f"http://127.0.0.1:{cfg['DEVSTACK_PUSHGATEWAY_PORT']}"


def wait_for(what: str, probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = WAIT) -> T:
    """Poll ``probe`` until ``ok``; fail naming ``what`` and the last answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if ok(last):
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"{what}: not seen within {timeout:.0f}s (last answer: {str(last)[:500]})")


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]  # type: ignore[no-any-return]


@dataclass
class Run:
    run_id: str
    ended: float
    proc: subprocess.CompletedProcess[str]


@dataclass
class Scheduled:
    prometheus: str
    pushgateway: str
    tmp: Path
    runs: list[Run] = field(default_factory=list)
    seen: dict[str, Any] = field(default_factory=dict)

    def run(self, owner: PostgisStore, *extra: str) -> Run:
        args, env = cronjob()
        env.pop("KFM_SECRETS_DIR")  # the local stack's settings come from the environment and .env.example
        env.update(KFM_ENVIRONMENT="dev", KFM_METRICS__PUSHGATEWAY_URL=self.pushgateway)  # the local database is dev
        split = args.index("--")
        proc = kfm_maint(*args[:split], *extra, *args[split:], env=env, timeout=600)
        found = re.search(r"history: run (\S+) recorded", proc.stdout)
        assert found, f"the run was not recorded (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr}"
        ended = owner.scalar("SELECT extract(epoch FROM started_at + duration_ms * interval '1 ms') "
                             "FROM kfm_ops.check_runs WHERE run_id = %s", (found[1],))
        run = Run(found[1], float(ended), proc)
        self.runs.append(run)
        return run

    def report(self, *args: str) -> dict[str, Any]:
        proc = kfm_maint("report", "--json", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _observe_series(s: Scheduled, run: Run, suite: str) -> None:
    """After a run: wait until Prometheus has its series (its end time), then keep what it shows."""
    s.seen[run.run_id] = wait_for(
        f"kfm_run_timestamp_seconds of run {run.run_id} in Prometheus",
        lambda: query(s.prometheus, f'kfm_run_timestamp_seconds{{suite="{suite}",environment="dev"}}'),
        lambda r: len(r) == 1 and abs(float(r[0]["value"][1]) - run.ended) < 0.01)


@pytest.fixture(scope="module")
def scheduled(catalog: None, owner_pg: PostgisStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduled]:
    prometheus, pushgateway = ports()
    s = Scheduled(prometheus, pushgateway, tmp_path_factory.mktemp("scheduled"))
    _args, env = cronjob()
    suite = env["KFM_METRICS__JOB"]

    healthy = s.run(owner_pg)
    assert healthy.proc.returncode == 0, healthy.proc.stdout[-3000:]
    _observe_series(s, healthy, suite)
    s.seen["passed"] = query(prometheus, f'sum(kfm_check_outcome{{suite="{suite}",outcome="passed"}})')
    s.seen["up"] = query(prometheus, f'kfm_service_up{{suite="{suite}"}}')

    stale = ("UPDATE kfm_ops.sync_watermarks SET watermark = watermark - interval '1 year' WHERE store = 'search'")
    fresh = ("UPDATE kfm_ops.sync_watermarks SET watermark = watermark + interval '1 year' WHERE store = 'search'")
    with injected(lambda: owner_pg.execute(stale), lambda: owner_pg.execute(fresh)):
        failing = s.run(owner_pg, "--metrics-file", str(s.tmp / "failing.prom"))
    _observe_series(s, failing, suite)
    s.seen["alerts"] = wait_for(
        "the alerts KfmCheckFailing and KfmDerivedStoreStale firing in Prometheus",
        lambda: httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"],
        lambda alerts: {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
        >= {"KfmCheckFailing", "KfmDerivedStoreStale"})
    s.seen["report_failing"] = s.report()
    html = kfm_maint("report", "--html", str(s.tmp / "report.html"))
    assert html.returncode == 0, html.stdout + html.stderr

    recovered = s.run(owner_pg)
    _observe_series(s, recovered, suite)
    s.seen["report_recovered"] = s.report()
    since = owner_pg.scalar("SELECT started_at + interval '1 millisecond' FROM kfm_ops.check_runs WHERE run_id = %s",
                            (failing.run_id,))
    s.seen["report_since"] = s.report("--since", since.isoformat())
    yield s


def test_a_scheduled_run_leaves_its_series_in_prometheus(scheduled: Scheduled) -> None:
    healthy, failing, recovered = scheduled.runs
    for run in scheduled.runs:
        (series,) = scheduled.seen[run.run_id]
        assert series["metric"]["job"] == "kfm-opschecks", "pushed under the job, kept by honor_labels"
    checks = int(re.search(r"(\d+) passed", healthy.proc.stdout)[1])  # type: ignore[index]
    assert float(scheduled.seen["passed"][0]["value"][1]) == checks
    up = {r["metric"]["service"]: r["value"][1] for r in scheduled.seen["up"]}
    assert up == dict.fromkeys(("postgis", "graph", "search", "cache", "policy", "llm"), "1")
    assert healthy.proc.returncode == 0 and failing.proc.returncode == 1 and recovered.proc.returncode == 0
    assert "metrics: pushed to" in failing.proc.stdout


def test_the_failure_fires_its_alerts_in_prometheus(scheduled: Scheduled) -> None:
    firing = [a["labels"] for a in scheduled.seen["alerts"] if a["state"] == "firing"]
    failing = [a for a in firing if a["alertname"] == "KfmCheckFailing"]
    assert [(a["check"], a["severity"], a["risk"]) for a in failing] == [(FRESH_SEARCH, "info", "low")]
    stale = [a for a in firing if a["alertname"] == "KfmDerivedStoreStale"]
    assert [(a["store"], a["environment"]) for a in stale] == [("search", "dev")]


def _promtool_input(textfile: Path) -> list[dict[str, str]]:
    """The metrics of a textfile as promtool input series (each value held for 10 minutes)."""
    from prometheus_client.parser import text_string_to_metric_families

    series = []
    for family in text_string_to_metric_families(textfile.read_text()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            series.append({"series": f"{sample.name}{{{labels}}}", "values": f"{sample.value}x10"})
    return series


def test_the_failing_runs_own_metrics_fire_the_alert_in_promtool(scheduled: Scheduled) -> None:
    textfile = scheduled.tmp / "failing.prom"
    labels = {"environment": "dev", "suite": "kfm-opschecks", "check": FRESH_SEARCH, "area": "consistency",
              "risk": "low"}
    rules = ROOT / "deploy/prometheus/kfm-ops.rules.yml"
    tests = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": _promtool_input(textfile),
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": "KfmCheckFailing", "exp_alerts": [{
                "exp_labels": {**labels, "severity": "info"},
                "exp_annotations": {
                    "summary": f"{FRESH_SEARCH} fails in dev (low risk)",
                    "description": "kfm-maint report shows its message and hint; kfm-maint report --html FILE the "
                                   "page."}}]},
            {"eval_time": "2m", "alertname": "KfmServiceUnreachable", "exp_alerts": []},
        ]}]}
    path = scheduled.tmp / "from-the-run.test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    res = subprocess.run([stack_binary("promtool"), "test", "rules", str(path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def test_the_report_compares_each_run_with_the_previous_one(scheduled: Scheduled) -> None:
    healthy, failing, recovered = scheduled.runs
    report = scheduled.seen["report_failing"]
    assert report["latest"]["run_id"] == failing.run_id and report["reference"]["run_id"] == healthy.run_id
    assert [e["check"] for e in report["new"]] == [FRESH_SEARCH]
    (new,) = report["new"]
    assert BEHIND.search(new["message"]) and new["hint"] == "kfm-maint sync --targets search"
    assert new["risk"] == "low" and not report["persisting"] and not report["recovered"]
    assert report["latest"]["exit_code"] == 1 and report["latest"]["counts"]["failed"] == 1
    after = scheduled.seen["report_recovered"]
    assert after["latest"]["run_id"] == recovered.run_id and after["reference"]["run_id"] == failing.run_id
    assert [e["check"] for e in after["recovered"]] == [FRESH_SEARCH] and not after["new"]
    trend = next(c["trend"] for c in after["checks"] if c["check"] == FRESH_SEARCH)
    assert trend[-3:] == ["passed", "failed", "passed"]
    since = scheduled.seen["report_since"]  # --since just after the failing run: the state then was the failure
    assert since["reference"]["run_id"] == failing.run_id and [r["run_id"] for r in since["runs"]] == [
        recovered.run_id]
    assert [e["check"] for e in since["recovered"]] == [FRESH_SEARCH]


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"chromium-profile-{time.monotonic_ns()}"
    profile.mkdir()
    return subprocess.run(
        [stack_binary("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--hide-scrollbars", *args],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "HOME": str(tmp)})


def test_the_html_report_renders_with_the_failing_check_at_the_top(scheduled: Scheduled) -> None:
    from PIL import Image

    page = scheduled.tmp / "report.html"
    dom = _chromium("--dump-dom", page.as_uri(), tmp=scheduled.tmp)
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    first = re.search(r'<article class="failure risk-(\w+)" data-check="([^"]+)"', dom.stdout)
    assert first and first[2] == FRESH_SEARCH, "the first card on the page is the failing check"
    assert dom.stdout.index('id="failing"') < dom.stdout.index('id="changes"') < dom.stdout.index('id="checks"')
    assert "1 failing check" in dom.stdout and BEHIND.search(dom.stdout)

    shot = scheduled.tmp / "report.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,900", page.as_uri(), tmp=scheduled.tmp)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 900)
    header = [image.getpixel((x, 10)) for x in range(0, 1280, 40)]
    assert header.count((0xB9, 0x1C, 0x1C)) > len(header) // 2, "the red status header is at the top"
    card = sum(1 for y in range(100, 450, 2) for x in range(200, 1000, 20) if image.getpixel((x, y)) == (0xFE, 0xF2,
                                                                                                           0xF2))
    assert card > 100, "the failure card is visible without scrolling"
    if os.environ.get("KFM_UPDATE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "report-screenshot.png")
