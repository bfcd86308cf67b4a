"""The metrics of check runs and actions, the textfile, the push's auth, the metrics settings (no services)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kfm_ops.errors import UsageError
from kfm_ops.metrics import CheckRun, PushFailed, action_outcome, action_registry, check_registry, push, write_textfile
from kfm_ops.redact import redact
from kfm_ops.results import OUTCOMES, CheckResult, Figure
from kfm_ops.settings import load_settings


def samples(path: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            found.setdefault(s.name, []).append((dict(s.labels), s.value))
    return found


def value(found: dict[str, Any], name: str, **labels: str) -> float:
    hits = [v for lab, v in found[name] if all(lab.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, (name, labels, found.get(name))
    return float(hits[0])


RESULTS = [
    CheckResult("opschecks/health/test_a.py::test_ok", "passed", 0.2, "high", "health"),
    CheckResult("opschecks/health/test_a.py::test_bad", "failed", 1.5, "medium", "health", "broken", "fix"),
    CheckResult("opschecks/consistency/test_c.py::test_search", "passed", 0.3, "medium", "consistency",
                figures=(Figure("consistency_items", 2, {"store": "search", "kind": "missing"}),
                         Figure("derived_store_lag_seconds", 12.5, {"store": "search"}),
                         Figure("derived_store_lag_seconds", 1, {"other": "shape"}),  # ignored: other labels
                         Figure("Bad-Name", 1))),
    CheckResult("opschecks/contract/test_d.py::test_known", "known", 0.1, "low", "contract", "still broken"),
]


def test_a_check_run_becomes_one_series_per_check_and_outcome(tmp_path: Path) -> None:
    run = CheckRun(environment="production", suite="kfm-opschecks", started=1000.0, duration=20.0, exit_code=1,
                   services=[{"service": "postgis", "configured": True, "up": True, "version": "PostgreSQL 15"},
                             {"service": "graph", "configured": True, "up": False, "version": None},
                             {"service": "llm", "configured": False, "up": False}],
                   last_success={"opschecks/health/test_a.py::test_bad": 500.0}, run_last_success=400.0,
                   baseline={"entries": 3, "expired": [{"check": "x"}], "unused": []}, history_recorded=True)
    path = tmp_path / "kfm.prom"
    write_textfile(check_registry(RESULTS, run), path)
    found = samples(path)
    common = {"environment": "production", "suite": "kfm-opschecks"}
    bad = {**common, "check": "opschecks/health/test_a.py::test_bad", "risk": "medium", "area": "health"}
    assert value(found, "kfm_check_outcome", **bad, outcome="failed") == 1
    assert sum(value(found, "kfm_check_outcome", **bad, outcome=o) for o in OUTCOMES) == 1
    assert value(found, "kfm_check_outcome", check="opschecks/contract/test_d.py::test_known", outcome="known") == 1
    assert value(found, "kfm_check_duration_seconds", **bad) == 1.5
    assert value(found, "kfm_check_last_success_timestamp_seconds", **bad) == 500.0  # from the history
    assert value(found, "kfm_check_last_success_timestamp_seconds", check="opschecks/health/test_a.py::test_ok") == 1020
    assert not [lab for lab, _ in found["kfm_check_last_success_timestamp_seconds"]
                if lab["check"].endswith("test_known")], "never passed: no last success"
    assert value(found, "kfm_consistency_items", **common, store="search", kind="missing") == 2
    assert value(found, "kfm_derived_store_lag_seconds", store="search") == 12.5
    assert not any(name.lower().startswith("kfm_bad") for name in found)
    assert value(found, "kfm_checks", **common, outcome="failed") == 1
    assert value(found, "kfm_run_timestamp_seconds", **common) == 1020.0
    assert value(found, "kfm_run_exit_code", **common) == 1
    assert value(found, "kfm_run_last_success_timestamp_seconds", **common) == 400.0
    assert value(found, "kfm_run_history_recorded", **common) == 1
    assert value(found, "kfm_service_up", service="postgis") == 1
    assert value(found, "kfm_service_up", service="graph") == 0
    assert "llm" not in {lab["service"] for lab, _ in found["kfm_service_up"]}, "not configured: no series"
    assert value(found, "kfm_service_info", service="postgis", version="PostgreSQL 15") == 1
    assert value(found, "kfm_baseline_entries", state="active") == 2
    assert value(found, "kfm_baseline_entries", state="expired") == 1
    assert all(lab["environment"] == "production" for series in found.values() for lab, _ in series)


def test_a_passing_run_is_its_own_last_success(tmp_path: Path) -> None:
    run = CheckRun(environment="dev", suite="s", started=50.0, duration=5.0, exit_code=0)
    path = tmp_path / "m.prom"
    write_textfile(check_registry([], run), path)
    found = samples(path)
    assert value(found, "kfm_run_last_success_timestamp_seconds") == 55.0
    assert "kfm_baseline_entries" not in found and "kfm_run_history_recorded" not in found


def _action_report(exitcode: int, **kfm: Any) -> dict[str, Any]:
    return {"created": 2000.0, "duration": 30.0, "exitcode": exitcode,
            "tests": [{"nodeid": "kfm-maint::cache-rebuild::plan", "outcome": "passed", "call": {"duration": 0.5}},
                      {"nodeid": "kfm-maint::cache-rebuild::apply", "outcome": "passed", "call": {"duration": 20.0}},
                      {"nodeid": "opschecks/contract/test_cache.py::test_x", "outcome": "passed"}],
            "kfm": {"command": "cache-rebuild", "environment": "staging", "duration_s": 31.0, **kfm}}


def test_an_action_becomes_its_outcome_duration_steps_and_counts(tmp_path: Path) -> None:
    report = _action_report(0, outcome="succeeded", verification={"failed": []},
                            counts={"summaries_changed": 11, "dry": False, "search": {"indexed": 5, "note": "x"}})
    path = tmp_path / "a.prom"
    write_textfile(action_registry(report, last_success=1.0), path)
    found = samples(path)
    who = {"environment": "staging", "action": "cache-rebuild"}
    assert value(found, "kfm_action_outcome", **who, outcome="succeeded") == 1
    assert value(found, "kfm_action_outcome", **who, outcome="failed") == 0
    assert value(found, "kfm_action_timestamp_seconds", **who) == 2030.0
    assert value(found, "kfm_action_last_success_timestamp_seconds", **who) == 2030.0
    assert value(found, "kfm_action_duration_seconds", **who) == 31.0
    assert value(found, "kfm_action_step_duration_seconds", **who, step="apply") == 20.0
    assert {lab["step"] for lab, _ in found["kfm_action_step_duration_seconds"]} == {"plan", "apply"}
    assert value(found, "kfm_action_count", **who, count="summaries_changed") == 11
    assert value(found, "kfm_action_count", **who, count="search.indexed") == 5
    assert value(found, "kfm_action_verification_failed", **who) == 0


def test_a_failed_action_keeps_its_last_success_from_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "a.prom"
    write_textfile(action_registry(_action_report(5), last_success=1500.0), path)
    found = samples(path)
    assert value(found, "kfm_action_outcome", outcome="failed") == 1
    assert value(found, "kfm_action_last_success_timestamp_seconds") == 1500.0
    assert [action_outcome(c) for c in (0, 1, 3, 4, 5, 70)] == [
        "succeeded", "verification_failed", "refused", "failed", "failed", "failed"]
    assert action_outcome(5, interrupted=True) == "aborted"


def test_the_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "node-exporter" / "kfm.prom"
    run = CheckRun(environment="dev", suite="s", started=1.0, duration=1.0, exit_code=0)
    write_textfile(check_registry(RESULTS, run), path)
    first = path.stat().st_ino
    write_textfile(check_registry(RESULTS[:1], run), path)
    assert path.stat().st_ino != first, "a new file renamed over the old one, never rewritten in place"
    assert os.listdir(path.parent) == ["kfm.prom"], "no temporary file left behind"
    assert "test_bad" not in path.read_text()


def test_a_push_that_fails_says_why_without_the_password() -> None:
    run = CheckRun(environment="dev", suite="s", started=1.0, duration=1.0, exit_code=0)
    load_settings(None, metrics={"pushgateway_url": "http://ops:canary-Push-Pw-9@127.0.0.1:9/"})
    with pytest.raises(PushFailed) as info:
        push(check_registry([], run), "http://ops:canary-Push-Pw-9@127.0.0.1:9", job="s",
             grouping={"environment": "dev"}, timeout=2)
    assert "127.0.0.1:9" in str(info.value) and "canary-Push-Pw-9" not in str(info.value)
    assert "canary-Push-Pw-9" not in redact("pw canary-Push-Pw-9"), "the URL's password is registered as a secret"


def test_metrics_and_history_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith(("KFM_METRICS", "KFM_HISTORY", "KFM_CHECKS"))]:
        monkeypatch.delenv(var)
    env = tmp_path / "kfm.env"
    env.write_text("KFM_METRICS__PUSHGATEWAY_URL=\nKFM_HISTORY__RETENTION_DAYS=30\n"
                   f"KFM_CHECKS__BASELINE_FILE={tmp_path / 'b.toml'}\n")
    settings = load_settings(env)
    assert settings.metrics.pushgateway_url is None, "set but empty: not configured (kfm-maint clears it)"
    assert settings.metrics.job == "kfm-opschecks" and settings.history.retention_days == 30
    assert settings.checks.baseline_file == tmp_path / "b.toml"
    env.write_text("KFM_METRICS__PUSHGATEWAY_URL=pushgateway:9091\n")
    with pytest.raises(UsageError, match="KFM_METRICS__PUSHGATEWAY_URL"):
        load_settings(env)
    env.write_text("KFM_HISTORY__RETENTION_DAYS=0\n")
    with pytest.raises(UsageError, match="KFM_HISTORY__RETENTION_DAYS"):
        load_settings(env)


def test_the_status_at_the_end_of_a_session_connects_to_nothing() -> None:
    from kfm_ops.errors import ServiceError
    from kfm_ops.hub import ServiceHub

    settings = load_settings(None, postgis={"dsn": "postgresql://u@127.0.0.1:1/kfm", "connect_timeout": 1},
                             cache={"url": "redis://127.0.0.1:1/0"}, graph=None, search=None, policy=None, llm=None)
    hub = ServiceHub(settings)
    with pytest.raises(ServiceError):
        hub.client("postgis")
    rows = {r["service"]: r for r in hub.status(warm=False)}
    assert rows["postgis"]["up"] is False and "unreachable" in rows["postgis"]["error"]
    assert rows["cache"]["configured"] and rows["cache"]["up"] is None, "never used: unknown, not probed"
    assert not rows["graph"]["configured"]
    run = CheckRun(environment="dev", suite="s", started=1.0, duration=1.0, exit_code=4, services=list(rows.values()))
    path_rows = next(s for s in check_registry([], run).collect() if s.name == "kfm_service_up").samples
    assert {s.labels["service"]: s.value for s in path_rows} == {"postgis": 0.0}
