"""The fixture plugin from the outside: a checks folder that is not this repo.

Each test writes a small checks file into a temporary folder and runs pytest
there (the plugin loads through its pytest11 entry point, as in a production
runner image). The settings point at the local stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kfm_ops.checkrun import run_pytest
from tests.helpers import ROOT

pytestmark = pytest.mark.devstack

STACK_ENV = ROOT / ".env.example"

WRITES = '''
import pytest
from kfm_ops.errors import ActionRefused, ServiceError


def test_postgis_session_is_read_only(postgis):
    with pytest.raises(ServiceError) as caught:
        postgis.execute("CREATE TABLE kfm_ops.kfm_proof_write (x int)")
    assert caught.value.fault == "permission denied" and "read-only transaction" in caught.value.message


def test_graph_session_is_read_only(graph):
    with pytest.raises(ServiceError) as caught:
        graph.run("CREATE (:KfmProofWrite {x: 1})")
    assert caught.value.fault == "permission denied" and "read" in caught.value.message.lower()


def test_search_session_is_read_only(search):
    with pytest.raises(ActionRefused):
        search.client.index(index="kfm-proof-write", body={"x": 1})
    with pytest.raises(ActionRefused):
        search.client.indices.delete(index="kfm-items")


def test_cache_session_is_read_only(cache):
    with pytest.raises(ServiceError) as caught:
        cache.client.set("kfm-proof-write", "1")
    assert caught.value.fault == "permission denied"


def test_writer_is_blocked_without_marker(kfm_writer):
    pass


@pytest.mark.kfm_writable
def test_writer_is_available_with_marker(kfm_writer):
    assert kfm_writer.cache(write=True).client.ping()


@pytest.mark.kfm_writable("cache")
def test_writer_opens_only_the_stores_named(kfm_writer):
    assert kfm_writer.cache(write=True).client.ping()
    with pytest.raises(ActionRefused) as refused:
        kfm_writer.postgis(write=True)
    assert "writable: cache" in refused.value.message
'''

SERVICES = '''
def test_uses_postgis(postgis):
    assert postgis.execute("SELECT 1").fetchone() == (1,)


def test_uses_cache(cache):
    assert cache.client.ping()


def test_uses_graph(graph):
    assert graph.run("RETURN 1 AS x") == [{"x": 1}]
'''


def _run(folder: Path, source: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    (folder / "test_external.py").write_text(source)
    base = {k: v for k, v in os.environ.items() if not k.startswith("KFM_")}
    run = run_pytest([str(folder), "-p", "no:cacheprovider", "-rA", *args], cwd=folder, inherit_env=False,
                     env={**base, "KFM_ENV_FILE": str(STACK_ENV), **(env or {})}, timeout=300)
    assert run.report is not None, run.stdout + run.stderr
    outcomes = {t["nodeid"].split("::")[-1]: t for t in run.report["tests"]}
    return run.returncode, outcomes, run.stdout + run.stderr


def test_fixtures_work_outside_the_repo_and_check_sessions_cannot_write(tmp_path: Path) -> None:
    code, tests, output = _run(tmp_path, WRITES)
    for name in ("test_postgis_session_is_read_only", "test_graph_session_is_read_only",
                 "test_search_session_is_read_only", "test_cache_session_is_read_only",
                 "test_writer_is_available_with_marker", "test_writer_opens_only_the_stores_named"):
        assert tests[name]["outcome"] == "passed", output
    blocked = tests["test_writer_is_blocked_without_marker"]
    assert blocked["outcome"] == "error"
    assert "kfm_writable" in json.dumps(blocked), "the refusal must name the fix"
    assert code == 1


def test_down_service_fails_and_unconfigured_service_skips(tmp_path: Path) -> None:
    env_file = tmp_path / "partial.env"
    stack = dict(line.split("=", 1) for line in STACK_ENV.read_text().splitlines() if line.startswith("KFM_"))
    keep = {k: v for k, v in stack.items() if k.startswith(("KFM_POSTGIS__", "KFM_ENVIRONMENT", "KFM_CACHE__"))}
    keep["KFM_CACHE__URL"] = "redis://127.0.0.1:1/0"  # configured, but nothing listens there
    env_file.write_text("".join(f"{k}={v}\n" for k, v in keep.items()))
    code, tests, output = _run(tmp_path, SERVICES, env={"KFM_ENV_FILE": str(env_file)})
    assert tests["test_uses_postgis"]["outcome"] == "passed", output
    down = tests["test_uses_cache"]
    assert down["outcome"] in ("failed", "error") and "unreachable" in json.dumps(down), output
    skipped = tests["test_uses_graph"]
    assert skipped["outcome"] == "skipped" and "graph is not configured" in json.dumps(skipped), output
    assert code == 1

    code, tests, output = _run(tmp_path, SERVICES, "--kfm-require-all", env={"KFM_ENV_FILE": str(env_file)})
    assert tests["test_uses_graph"]["outcome"] in ("failed", "error"), output
    assert "require-all" in json.dumps(tests["test_uses_graph"])


def test_bad_settings_stop_the_run_with_one_message(tmp_path: Path) -> None:
    (tmp_path / "test_external.py").write_text(SERVICES)
    base = {k: v for k, v in os.environ.items() if not k.startswith("KFM_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "-p", "no:cacheprovider"], cwd=tmp_path,
                          env={**base, "KFM_ENV_FILE": str(STACK_ENV), "KFM_GRAPH__URL": "http//nope"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 4  # pytest's usage-error exit
    assert "KFM_GRAPH__URL" in proc.stderr and "bolt://" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_report_header_shows_server_versions(tmp_path: Path) -> None:
    _code, _tests, output = _run(tmp_path, SERVICES)
    for expected in ("postgis: PostgreSQL 15", "PostGIS 3", "graph: Neo4j Kernel 5.26", "search: opensearch 2.19",
                     "cache: Redis 7", "policy: OPA", "llm: openai API"):
        assert expected in output
