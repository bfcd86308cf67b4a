"""A canary value in every credential never reaches stdout, stderr, the log, the report or the ledger.

Success paths: OPA and OpenSearch run without authentication locally, so a canary
token/password there is sent and ignored — the runs succeed while carrying it.
Failure paths: a canary as the PostGIS, Neo4j, Redis and LLM credentials makes
every connection fail with an authentication error, whose text must stay clean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import toxiproxy
from tests.helpers import kfm_maint

pytestmark = pytest.mark.devstack

CANARY = "kfm-canary-9d1f0b6e7a"


def _stack_env() -> dict[str, str]:
    """The harness settings of the stack under test (derived by devstack from its ports: whatever they are)."""
    from devstack.config import harness_env, load_config

    return harness_env(load_config())


def _assert_clean(where: str, text: str) -> None:
    assert CANARY not in text, f"the canary leaked into {where}"


def _run_and_check(tmp_path: Path, env: dict[str, str], *args: str) -> Any:
    log = tmp_path / "kfm.log"
    report = tmp_path / "report.json"
    proc = kfm_maint("--json-report-file", str(report), *args,
                     env={**env, "KFM_LOG_FILE": str(log), "KFM_LOG_LEVEL": "debug"})
    _assert_clean("stdout", proc.stdout)
    _assert_clean("stderr", proc.stderr)
    if log.exists():
        _assert_clean("the log file", log.read_text())
    if report.exists():
        _assert_clean("the JSON report", report.read_text())
    return proc


def test_canary_on_success_paths(tmp_path: Path, owner_pg: Any) -> None:
    env = {**_stack_env(), "KFM_POLICY__TOKEN": CANARY, "KFM_SEARCH__USERNAME": "kfm",
           "KFM_SEARCH__PASSWORD": CANARY, "KFM_API__URL": "http://127.0.0.1:9", "KFM_API__TOKEN": CANARY}
    proc = _run_and_check(tmp_path, env, "smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    proc = _run_and_check(tmp_path, env, "reindex", "--targets", "search", "--force")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    ledger = owner_pg.execute("SELECT plan::text || counts::text || coalesce(error, '') FROM kfm_ops.audit_ledger")
    for row in ledger:
        _assert_clean("the audit ledger", row[0])


@pytest.mark.parametrize("args", [["smoke"], ["cache", "rebuild"], ["reindex", "--targets", "search,graph"],
                                  ["migrate", "--dry-run"]], ids=" ".join)
def test_canary_on_failure_paths(tmp_path: Path, args: list[str]) -> None:
    env = {**_stack_env(), "KFM_POSTGIS__PASSWORD": CANARY, "KFM_POSTGIS__WRITE_PASSWORD": CANARY,
           "KFM_GRAPH__PASSWORD": CANARY, "KFM_CACHE__PASSWORD": CANARY, "KFM_CACHE__WRITE_PASSWORD": CANARY,
           "KFM_LLM__API_KEY": CANARY, "KFM_POLICY__TOKEN": CANARY,
           "KFM_POSTGIS__DSN": f"postgresql://kfm_reader:{CANARY}@{toxiproxy.upstream('postgis')}/kfm"}
    proc = _run_and_check(tmp_path, env, *args)
    assert proc.returncode in (1, 4), (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr


def test_json_report_of_a_check_run_is_redacted(tmp_path: Path) -> None:
    env = {**_stack_env(), "KFM_CACHE__PASSWORD": CANARY}
    proc = _run_and_check(tmp_path, env, "check", "--", "-m", "cache and smoke")
    assert proc.returncode in (1, 4)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"].get("passed", 0) + report["summary"].get("failed", 0) + \
        report["summary"].get("error", 0) > 0
