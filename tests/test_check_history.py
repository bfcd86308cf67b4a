"""The history's retention, known failures in real check sessions, the plugin's metrics file, JUnit for CI,
and actions' metrics — on the local stack.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml
from prometheus_client.parser import text_string_to_metric_families

from kfm_ops import history
from kfm_ops.results import CheckResult
from kfm_ops.settings import Settings
from kfm_ops.stores.postgis import PostgisStore
from tests.helpers import ROOT, kfm_maint
from tests.test_scheduled_run import ports, query, wait_for

pytestmark = pytest.mark.devstack


def series(path: Path) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(path.read_text())
            for s in f.samples]


def one(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    hits = [v for n, lab, v in found if n == name and all(lab.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


# --------------------------------------------------------------------------- retention
def test_retention_deletes_old_runs_and_keeps_the_newest_per_suite(owner_pg: PostgisStore,
                                                                   kfm_settings: Settings) -> None:
    suite = f"kfm-proof-retention-{uuid.uuid4().hex[:8]}"
    result = [CheckResult("opschecks/health/test_x.py::test_y", "failed", 0.5, "low", "health", "broken", "fix")]

    def record(started: float, max_runs: int = 1000, retention_days: int = 30) -> str:
        run_id = str(uuid.uuid4())
        history.record(owner_pg, run_id=run_id, environment="dev", suite=suite, selection="-m smoke",
                       started=started, duration=1.0, exit_code=1, results=result, counts={"failed": 1},
                       retention_days=retention_days, max_runs=max_runs)
        return run_id

    def kept() -> list[str]:
        return [r[0] for r in owner_pg.rows("SELECT run_id::text FROM kfm_ops.check_runs WHERE suite = %s "
                                            "ORDER BY started_at", (suite,))]

    try:
        now = dt.datetime.now(dt.UTC).timestamp()
        old = record(now - 31 * 86400, retention_days=60)
        assert kept() == [old]
        recent = [record(now - n) for n in (40, 30, 20, 10)]
        assert kept() == recent, "with a 30-day retention the 31-day-old run went at the next write"
        assert not owner_pg.rows("SELECT 1 FROM kfm_ops.check_results WHERE run_id = %s", (old,)), "results too"
        newest = record(now, max_runs=2)
        assert kept() == [recent[-1], newest], "only the newest max_runs runs of the suite are kept"
        assert kfm_settings.history.retention_days == 90 and kfm_settings.history.max_runs == 5000
    finally:
        owner_pg.execute("DELETE FROM kfm_ops.check_runs WHERE suite = %s", (suite,))


# --------------------------------------------------------------------------- known failures in a real session
CHECKS = '''
import pytest
from kfm_ops import PostgisStore, expect


@pytest.mark.risk("high")
def test_known_broken(postgis: PostgisStore) -> None:
    expect(False, "known broken thing", postgis.where("x"), hint="wait for OPS-1")


@pytest.mark.risk("low")
def test_expired_entry(postgis: PostgisStore) -> None:
    expect(False, "still broken", postgis.where("x"), hint="fix it")


def test_listed_but_passing(postgis: PostgisStore) -> None:
    assert postgis.scalar("SELECT 1") == 1
'''


def _baseline(path: Path, today: dt.date) -> Path:
    entries = [("test_known_broken", today + dt.timedelta(days=30)),
               ("test_expired_entry", today - dt.timedelta(days=1)),
               ("test_listed_but_passing", today), ("test_renamed_long_ago", today)]
    path.write_text("".join(f'[[known]]\ncheck = "test_baselined.py::{name}"\nreason = "ticket OPS-1"\n'
                            f'owner = "ops"\nexpires = {expires.isoformat()}\n\n' for name, expires in entries))
    return path


def test_a_baseline_makes_listed_failures_known_until_they_expire(tmp_path: Path) -> None:
    from kfm_ops.checkrun import run_pytest

    (tmp_path / "test_baselined.py").write_text(CHECKS)
    baseline = _baseline(tmp_path / "baseline.toml", dt.date.today())
    metrics = tmp_path / "checks.prom"
    run = run_pytest([str(tmp_path), "-p", "no:cacheprovider", "-rA", "--metrics-file", str(metrics)], cwd=tmp_path,
                     env={"KFM_CHECKS__BASELINE_FILE": str(baseline), "KFM_METRICS__PUSHGATEWAY_URL": ""}, timeout=300)
    assert run.report is not None, run.stdout + run.stderr
    outcomes = {t["nodeid"].split("::")[-1]: t for t in run.report["tests"]}
    known = outcomes["test_known_broken"]
    assert known["outcome"] == "xfailed" and known["metadata"]["kfm"]["known"]["owner"] == "ops"
    assert outcomes["test_expired_entry"]["outcome"] == "failed", "past its expiry it fails again"
    assert outcomes["test_listed_but_passing"]["outcome"] == "failed", "strict: a fixed check must leave the baseline"
    assert "XPASS(strict)" in json.dumps(outcomes["test_listed_but_passing"])
    assert run.returncode == 1
    assert "baseline: 4 known failures in" in run.stdout and "EXPIRED baseline entry" in run.stdout
    assert "UNUSED baseline entry test_baselined.py::test_renamed_long_ago" in run.stdout
    summary = run.report["kfm"]["baseline"]
    assert [e["check"] for e in summary["expired"]] == ["test_baselined.py::test_expired_entry"]
    assert [e["check"] for e in summary["unused"]] == ["test_baselined.py::test_renamed_long_ago"]
    found = series(metrics)
    assert one(found, "kfm_check_outcome", outcome="known", risk="high") == 1, "severity: the risk tier"
    assert one(found, "kfm_baseline_entries", state="expired") == 1
    assert one(found, "kfm_baseline_entries", state="unused") == 1


def test_only_the_known_failure_left_means_exit_0(tmp_path: Path) -> None:
    from kfm_ops.checkrun import run_pytest

    (tmp_path / "test_baselined.py").write_text(CHECKS)
    baseline = _baseline(tmp_path / "baseline.toml", dt.date.today())
    run = run_pytest([str(tmp_path), "-p", "no:cacheprovider", "-k", "known_broken"], cwd=tmp_path,
                     env={"KFM_CHECKS__BASELINE_FILE": str(baseline)}, timeout=300)
    assert run.returncode == 0, run.stdout
    assert run.report and run.report["summary"].get("xfailed") == 1


def test_the_report_lists_expired_and_unused_baseline_entries(tmp_path: Path, catalog: None) -> None:
    smoke = kfm_maint("smoke", "--suite", "kfm-proof-baseline")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    baseline = tmp_path / "baseline.toml"
    baseline.write_text('[[known]]\ncheck = "opschecks/health/test_redis.py::test_gone"\nreason = "r"\nowner = "o"\n'
                        'expires = 2099-01-01\n\n[[known]]\ncheck = "health/test_postgis.py::test_postgis_reachable"\n'
                        'reason = "old"\nowner = "dba"\nexpires = 2020-01-01\n')
    proc = kfm_maint("report", "--json", "--suite", "kfm-proof-baseline",
                     env={"KFM_CHECKS__BASELINE_FILE": str(baseline)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [e["owner"] for e in doc["baseline"]["expired"]] == ["dba"]
    assert [e["check"] for e in doc["baseline"]["unused"]] == ["opschecks/health/test_redis.py::test_gone"]
    text = kfm_maint("report", "--suite", "kfm-proof-baseline", env={"KFM_CHECKS__BASELINE_FILE": str(baseline)})
    assert "EXPIRED health/test_postgis.py::test_postgis_reachable (owner dba" in text.stdout


# --------------------------------------------------------------------------- the plugin's metrics, with xdist
def test_plain_pytest_writes_the_metrics_file_with_xdist(tmp_path: Path, catalog: None) -> None:
    from kfm_ops.checkrun import run_pytest

    metrics = tmp_path / "node-exporter" / "kfm.prom"
    run = run_pytest(["--pyargs", "opschecks", "-m", "consistency", "-n", "2", "-p", "no:cacheprovider",
                      "--metrics-file", str(metrics)], cwd=ROOT, env={"KFM_METRICS__PUSHGATEWAY_URL": ""}, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    found = series(metrics)
    checks = {lab["check"] for n, lab, _ in found if n == "kfm_check_outcome"}
    assert checks == {t["nodeid"] for t in run.report["tests"]}  # type: ignore[index]
    for store in ("search", "graph"):  # figures measured in the workers reach the controller's file
        assert one(found, "kfm_consistency_items", store=store, kind="missing") == 0
        assert one(found, "kfm_consistency_items", store=store, kind="compared") > 0
    assert one(found, "kfm_derived_store_lag_seconds", store="search") >= 0
    assert one(found, "kfm_run_exit_code") == 0
    assert {lab["service"] for n, lab, _ in found if n == "kfm_service_info"} >= {"postgis", "search", "graph"}


# --------------------------------------------------------------------------- JUnit, actions' metrics, push failures
def test_checks_write_junit_for_ci(tmp_path: Path, catalog: None) -> None:
    path = tmp_path / "smoke.xml"
    proc = kfm_maint("smoke", "--junit-xml", str(path), "--suite", "kfm-proof-junit")
    assert proc.returncode == 0, proc.stdout[-2000:]
    (suite,) = list(JUnitXml.fromfile(str(path)))
    assert suite.tests > 10 and suite.failures == 0 and suite.errors == 0
    assert any(c.classname.startswith("opschecks.") for c in suite)


def test_an_action_writes_junit_and_metrics_and_pushes_them(tmp_path: Path, catalog: None) -> None:
    prometheus, pushgateway = ports()
    junit, metrics = tmp_path / "cache.xml", tmp_path / "cache.prom"
    proc = kfm_maint("cache", "rebuild", "--junit-xml", str(junit), "--metrics-file", str(metrics),
                     env={"KFM_METRICS__PUSHGATEWAY_URL": pushgateway})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (suite,) = list(JUnitXml.fromfile(str(junit)))
    names = [(c.classname, c.name) for c in suite]
    steps = [n for c, n in names if c == "kfm-maint.cache-rebuild"]
    assert steps == ["plan", "apply", "verify"], names
    assert any(c.startswith("opschecks.") for c, _ in names), "the verification checks are test cases too"
    assert suite.failures == 0 and suite.errors == 0
    found = series(metrics)
    assert one(found, "kfm_action_outcome", action="cache-rebuild", outcome="succeeded") == 1
    assert one(found, "kfm_action_step_duration_seconds", step="apply") > 0
    assert one(found, "kfm_action_count", count="summaries_unchanged") >= 0
    ended = one(found, "kfm_action_timestamp_seconds")
    wait_for("the cache-rebuild run in Prometheus",
             lambda: query(prometheus, 'kfm_action_timestamp_seconds{action="cache-rebuild",job="kfm-maint"}'),
             lambda r: len(r) == 1 and abs(float(r[0]["value"][1]) - ended) < 0.01)

    refused = kfm_maint("cache", "rebuild", "--environment", "production", "--metrics-file", str(metrics))
    assert refused.returncode == 3, refused.stderr
    assert one(series(metrics), "kfm_action_outcome", outcome="refused") == 1


def test_a_dead_pushgateway_is_a_warning_not_a_changed_exit_code(catalog: None) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = kfm_maint("smoke", "--suite", "kfm-proof-push", env={"KFM_METRICS__PUSHGATEWAY_URL": f"http://127.0.0.1:{port}"})
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert f"warning: pushing metrics to http://127.0.0.1:{port} failed" in proc.stderr


def test_without_a_write_dsn_the_run_says_it_is_not_recorded(tmp_path: Path) -> None:
    env_file = tmp_path / "reader-only.env"
    settings_file = os.environ.get("KFM_ENV_FILE") or str(ROOT / ".env.example")
    lines = [ln for ln in Path(settings_file).read_text().splitlines() if ln.startswith("KFM_")]
    env_file.write_text("\n".join(ln for ln in lines if "WRITE" not in ln) + "\n")
    env: dict[str, Any] = {k: "" for k in os.environ if k.startswith("KFM_POSTGIS__WRITE")}
    proc = kfm_maint("smoke", "--suite", "kfm-proof-nowrite", env={**env, "KFM_ENV_FILE": str(env_file)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "history: not recorded (no write DSN" in proc.stdout


def test_a_history_role_of_its_own_records_the_run(kfm_settings: Settings, catalog: None) -> None:
    """KFM_HISTORY__DSN is what writes the history: with the owner DSN broken, the run is still recorded."""
    pg = kfm_settings.postgis
    assert pg is not None and pg.write_dsn and pg.write_password
    env = {"KFM_POSTGIS__WRITE_DSN": "postgresql://nobody@127.0.0.1:1/kfm", "KFM_HISTORY__DSN": pg.write_dsn,
           "KFM_HISTORY__PASSWORD": pg.write_password.get_secret_value()}
    proc = kfm_maint("smoke", "--suite", "kfm-proof-history-dsn", env=env)
    assert proc.returncode == 0 and "recorded (" in proc.stdout, proc.stdout[-2000:] + proc.stderr
    broken = kfm_maint("smoke", "--suite", "kfm-proof-history-dsn",
                       env={"KFM_POSTGIS__WRITE_DSN": "postgresql://nobody@127.0.0.1:1/kfm"})
    assert broken.returncode == 0, "a history that cannot be written never changes the checks' exit code"
    assert "warning: the check history is not recorded: postgis unreachable" in broken.stderr
