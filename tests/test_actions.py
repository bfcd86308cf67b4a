"""kfm-maint actions on the real stack: dry-run, gates, lock, ledger, idempotency, verification."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import fingerprint
from tests.helpers import LOCAL_PLAINTEXT, kfm_maint

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

ACTIONS = [["migrate"], ["sample-data", "init", "--items", "2100"], ["reindex", "--targets", "search,graph", "--prune"],
           ["reindex", "--targets", "search", "--force"], ["cache", "rebuild"], ["reindex", "rollback"],
           ["user", "create", "--username", "dryrun-op", "--role", "viewer", "--password-out", "{tmp}/kfm-dry.pw"]]


@pytest.fixture
def stores(owner_pg: Any, search_writer: Any, graph_writer: Any, cache_writer: Any) -> Any:
    return lambda: fingerprint.everything(owner_pg, search_writer, graph_writer, cache_writer)


def _json(proc: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


@pytest.mark.parametrize("args", ACTIONS, ids=" ".join)
def test_dry_run_writes_nothing_anywhere(args: list[str], stores: Any, search_writer: Any, tmp_path: Path) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    if args == ["reindex", "rollback"]:  # something to roll back to: a verified index older than the live one
        assert kfm_maint("reindex", "--targets", "search", "--force", "--no-verify").returncode == 0
    before = stores()
    proc = kfm_maint(*args, "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PLAN (dry run" in proc.stdout
    for part in ("what:", "where:", "how much:", "rollback:"):
        assert part in proc.stdout
    assert stores() == before
    assert not (tmp_path / "kfm-dry.pw").exists()


def test_second_runs_change_nothing(stores: Any) -> None:
    def run_all() -> dict[str, Any]:
        return {
            "sample-data": _json(kfm_maint("sample-data", "init", "--json"))["counts"],
            "reindex": _json(kfm_maint("reindex", "--targets", "search,graph", "--json"))["counts"],
            "cache": _json(kfm_maint("cache", "rebuild", "--json"))["counts"],
        }

    run_all()  # the first runs: whatever the tests before left behind, the stores now hold the catalog
    before = stores()
    runs = run_all()
    assert runs["sample-data"]["items_written"] == 0
    assert runs["reindex"]["reindex-search"]["unchanged"] is True
    assert runs["reindex"]["sync-graph"]["items_changed"] == 0
    assert runs["cache"]["summaries_changed"] == 0 and runs["cache"]["summaries_deleted"] == 0
    after = stores()
    ops = ("kfm_ops.audit_ledger", "kfm_ops.sync_watermarks")  # bookkeeping of the runs themselves
    assert {k: v for k, v in after["postgis"].items() if k not in ops} == \
        {k: v for k, v in before["postgis"].items() if k not in ops}
    assert after["search"] == before["search"]
    assert after["graph"] == before["graph"]
    assert after["cache"] == before["cache"]


def _restamp(old: str, new: str, *, check: bool = True) -> None:
    """Change the deployment's environment the way an operator does: the canonical stamp, then the derived ones."""
    confirm = ["--confirm", "PRODUCTION"]
    steps = [(["identity", "environment", "--to", new, "--environment", old, *confirm], old),
             (["identity", "stamp", "--targets", "search,graph,cache", "--replace", "--environment", new, *confirm],
              new)]
    for args, environment in steps:
        proc = kfm_maint(*args, "--no-verify", env={"KFM_ENVIRONMENT": environment, **LOCAL_PLAINTEXT})
        assert proc.returncode == 0 or not check, proc.stdout + proc.stderr


@pytest.fixture
def production_marker(owner_pg: Any) -> Iterator[None]:
    try:
        _restamp("dev", "production")
        yield
    finally:  # a half-done restamp is undone too: the rest of the suite needs the dev deployment
        if owner_pg.scalar("SELECT name FROM kfm_ops.environment") == "production":
            _restamp("production", "dev")
        else:
            _restamp("dev", "dev", check=False)


def test_settings_disagreeing_with_the_database_marker_are_refused(stores: Any) -> None:
    before = stores()
    proc = kfm_maint("cache", "rebuild", "--environment", "production", "--confirm", "PRODUCTION",
                     env={"KFM_ENVIRONMENT": "production", **LOCAL_PLAINTEXT})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "the target database says it is 'dev'" in proc.stderr
    assert stores() == before


def test_flag_disagreeing_with_the_settings_is_refused() -> None:
    proc = kfm_maint("cache", "rebuild", "--environment", "staging")
    assert proc.returncode == 3
    assert "disagrees" in proc.stderr


@pytest.mark.usefixtures("production_marker")
def test_production_needs_environment_and_confirm(stores: Any) -> None:
    env = {"KFM_ENVIRONMENT": "production", **LOCAL_PLAINTEXT}
    before = stores()
    for flags in ([], ["--environment", "production"], ["--confirm", "PRODUCTION"],
                  ["--environment", "production", "--confirm", "yes"]):
        proc = kfm_maint("cache", "rebuild", *flags, env=env)
        assert proc.returncode == 3, (flags, proc.stdout, proc.stderr)
        assert "--confirm PRODUCTION" in proc.stderr or "confirmation word" in proc.stderr
    assert stores() == before
    plan = kfm_maint("cache", "rebuild", "--dry-run", "--environment", "production", env=env)
    assert plan.returncode == 0, plan.stderr
    sample = kfm_maint("sample-data", "init", "--environment", "production", "--confirm", "PRODUCTION", env=env)
    assert sample.returncode == 3 and "runs only on a database marked dev or staging" in sample.stderr
    ok = kfm_maint("cache", "rebuild", "--environment", "production", "--confirm", "PRODUCTION", "--no-verify",
                   env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_concurrent_run_is_refused_naming_the_holder(stores: Any, kfm_settings: Any) -> None:
    import psycopg

    section = kfm_settings.postgis
    holder = "11111111-2222-4333-8444-555555555555"
    with psycopg.connect(section.write_dsn, password=section.write_password.get_secret_value(), autocommit=True,
                         application_name=f"kfm-maint/{holder}/cache-rebuild") as other:
        other.execute("SELECT pg_advisory_lock(%s, hashtext('cache'))", (0x4B464D,))
        before = stores()
        proc = kfm_maint("cache", "rebuild")
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert holder in proc.stderr and "already running" in proc.stderr
        assert stores() == before
    assert kfm_maint("cache", "rebuild", "--no-verify").returncode == 0  # released with the holder's session


def test_ledger_records_success_and_failure(owner_pg: Any) -> None:
    ok = _json(kfm_maint("cache", "rebuild", "--json", "--no-verify"))
    failed = kfm_maint("reindex", "--targets", "graph", "--json", env={"KFM_POLICY__URL": "http://127.0.0.1:9"})
    assert failed.returncode == 5, failed.stdout + failed.stderr
    bad = _json(failed)
    rows = {str(r[0]): r[1:] for r in owner_pg.execute(
        "SELECT run_id, action, outcome, ended_at IS NOT NULL, duration_ms, error, actor, environment "
        "FROM kfm_ops.audit_ledger WHERE run_id = ANY(%s::uuid[])", ([ok["run_id"], bad["run_id"]],))}
    assert rows[ok["run_id"]][:3] == ("cache-rebuild", "succeeded", True)
    assert rows[bad["run_id"]][:3] == ("sync-graph", "failed", True)
    assert "policy" in rows[bad["run_id"]][4]
    assert rows[ok["run_id"]][6] == "dev"


def test_verification_runs_the_covering_checks_and_reports_them(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = kfm_maint("cache", "rebuild", "--json-report-file", str(report))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    nodeids = [t["nodeid"] for t in data["tests"]]
    assert "kfm-maint::cache-rebuild::apply" in nodeids
    assert any(n.startswith("opschecks/") and "cache" in n for n in nodeids)
    assert data["summary"]["passed"] == data["summary"]["total"]
    for key in ("created", "duration", "exitcode", "root", "environment", "summary", "tests"):
        assert key in data


def test_failed_verification_fails_the_command(cache_writer: Any) -> None:
    cache_writer.config_set("maxmemory-policy", "allkeys-random")
    try:
        proc = kfm_maint("cache", "rebuild")
    finally:
        cache_writer.config_set("maxmemory-policy", "volatile-lru")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED opschecks/health/test_cache.py::test_cache_eviction_policy" in proc.stdout


def test_user_create_is_idempotent_and_secret_free(tmp_path: Path, owner_pg: Any) -> None:
    secret = "kfm-canary-operator-pw-42"
    log = tmp_path / "kfm.log"
    env = {"OPERATOR_PW": secret, "KFM_LOG_FILE": str(log)}
    owner_pg.execute("DELETE FROM kfm_auth.operators WHERE username LIKE 'kfm-proof-%'")
    first = kfm_maint("user", "create", "--username", "kfm-proof-ops", "--role", "operator",
                      "--password-env", "OPERATOR_PW", "--json-report-file", str(tmp_path / "r.json"), env=env)
    second = kfm_maint("user", "create", "--username", "kfm-proof-ops", "--role", "operator",
                       "--password-env", "OPERATOR_PW", "--json", env=env)
    other = kfm_maint("user", "create", "--username", "kfm-proof-ops", "--role", "operator",
                      "--password-stdin", input="another-password-123\n", env=env)
    rotated = kfm_maint("user", "create", "--username", "kfm-proof-ops", "--role", "admin", "--rotate-password",
                        "--password-stdin", input="another-password-123\n", env=env)
    out = tmp_path / "generated.pw"
    generated = kfm_maint("user", "create", "--username", "kfm-proof-gen", "--role", "viewer",
                          "--password-out", str(out), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _json(second)["counts"] == {"accounts_changed": 0}
    assert other.returncode == 3 and "--rotate-password" in other.stderr
    assert rotated.returncode == 0, rotated.stderr
    assert generated.returncode == 0, generated.stderr
    assert str(out) in generated.stdout
    password = out.read_text().strip()
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    texts = [p.stdout + p.stderr for p in (first, second, other, rotated, generated)]
    texts += [log.read_text(), (tmp_path / "r.json").read_text()]
    texts += [r[0] for r in owner_pg.execute("SELECT plan::text || counts::text || coalesce(error,'') "
                                             "FROM kfm_ops.audit_ledger")]
    for text in texts:
        assert secret not in text and password not in text and "another-password-123" not in text
    hashes = owner_pg.execute("SELECT username, role, password_hash FROM kfm_auth.operators "
                              "WHERE username LIKE 'kfm-proof-%' ORDER BY 1").fetchall()
    assert [(u, r) for u, r, _h in hashes] == [("kfm-proof-gen", "viewer"), ("kfm-proof-ops", "admin")]
    assert all(h.startswith("$argon2") for _u, _r, h in hashes)
    repeat = kfm_maint("user", "create", "--username", "kfm-proof-gen", "--role", "viewer",
                       "--password-out", str(out), env=env)
    assert repeat.returncode == 0 and "accounts_changed=0" in repeat.stdout
    owner_pg.execute("DELETE FROM kfm_auth.operators WHERE username LIKE 'kfm-proof-%'")


def test_rollback_returns_to_the_previous_verified_index(search_writer: Any) -> None:
    first = kfm_maint("reindex", "--targets", "search", "--force", "--json")
    second = kfm_maint("reindex", "--targets", "search", "--force", "--json", "--keep", "2")
    assert first.returncode == 0 and second.returncode == 0, second.stdout + second.stderr
    older, newer = _json(first)["counts"]["index"], _json(second)["counts"]["index"]
    assert sorted(search_writer.indices.get_alias(name="kfm-items")) == [newer]
    back = kfm_maint("reindex", "rollback", "--json")
    assert back.returncode == 0, back.stdout + back.stderr
    assert sorted(search_writer.indices.get_alias(name="kfm-items")) == [older]
    assert search_writer.count(index="kfm-items")["count"] == _json(first)["counts"]["verified"]
    again = kfm_maint("reindex", "--targets", "search", "--json", "--keep", "2")
    assert again.returncode == 0
    live = sorted(search_writer.indices.get_alias(name="kfm-items"))
    assert len(live) == 1
    assert len(search_writer.indices.get(index="kfm-items-v*")) <= 2, "prune keeps --keep indices"


def _published_ids(owner_pg: Any) -> list[str]:
    return [r[0] for r in owner_pg.execute(
        "SELECT i.id FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id "
        "WHERE d.status = 'published' AND i.sensitivity <> 'restricted' ORDER BY i.id COLLATE \"C\"")]


def test_graph_links_an_item_derived_from_one_of_a_later_batch(owner_pg: Any, graph_writer: Any) -> None:
    ids = _published_ids(owner_pg)
    first, last = ids[0], ids[-1]
    link = "MATCH (a:Item {id: $a})-[r:WAS_DERIVED_FROM]->(b:Item {id: $b}) RETURN count(r) AS n"
    owner_pg.execute("INSERT INTO kfm.prov_links VALUES (%s, 'wasDerivedFrom', %s)", (first, last))
    try:
        # both ends missing from the graph: the first batch holds the link's start, the last its end
        graph_writer.run("MATCH (i:Item) WHERE i.id IN $ids DETACH DELETE i", ids=[first, last])
        proc = kfm_maint("reindex", "--targets", "graph", "--batch-size", "10", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _json(proc)["counts"]["derived_links_created"] >= 1
        assert graph_writer.run(link, a=first, b=last)[0]["n"] == 1
        again = _json(kfm_maint("reindex", "--targets", "graph", "--json", "--no-verify"))["counts"]
        assert again["items_changed"] == 0 and again["derived_links_created"] == 0
    finally:
        owner_pg.execute("DELETE FROM kfm.prov_links WHERE subject = %s AND relation = 'wasDerivedFrom' "
                         "AND object = %s", (first, last))
        restored = kfm_maint("reindex", "--targets", "graph", "--no-verify")  # the link goes with it
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert graph_writer.run(link, a=first, b=last)[0]["n"] == 0


def test_a_document_the_index_rejects_fails_the_bulk_step_and_leaves_the_alias(owner_pg: Any,
                                                                               search_writer: Any) -> None:
    item = _published_ids(owner_pg)[7]
    live = sorted(search_writer.indices.get_alias(name="kfm-items"))
    before = set(search_writer.indices.get(index="kfm-items-v*"))
    geom = owner_pg.execute("SELECT geom FROM kfm.items WHERE id = %s", (item,)).fetchone()[0]
    # a self-intersecting polygon: PostGIS stores it, OpenSearch cannot tessellate it
    owner_pg.execute("UPDATE kfm.items SET geom = ST_GeomFromText('POLYGON((-98 38, -97 39, -97 38, -98 39, -98 38))',"
                     " 4326) WHERE id = %s", (item,))
    try:
        proc = kfm_maint("reindex", "--targets", "search", "--force", "--no-verify")
    finally:
        owner_pg.execute("UPDATE kfm.items SET geom = %s WHERE id = %s", (geom, item))
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "step 'bulk'" in proc.stderr and item in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(search_writer.indices.get_alias(name="kfm-items")) == live
    assert set(search_writer.indices.get(index="kfm-items-v*")) == before, "the half-built index was discarded"


def test_a_link_changed_in_postgis_reaches_the_graph_of_an_unchanged_item(owner_pg: Any, graph_writer: Any) -> None:
    subject, source = owner_pg.execute("SELECT subject, object FROM kfm.prov_links WHERE relation = 'wasDerivedFrom' "
                                       "ORDER BY subject LIMIT 1").fetchone()
    link = "MATCH (:Item {id: $a})-[r:WAS_DERIVED_FROM]->(:Item {id: $b}) RETURN count(r) AS n"
    assert graph_writer.run(link, a=subject, b=source)[0]["n"] == 1
    owner_pg.execute("DELETE FROM kfm.prov_links WHERE subject = %s AND relation = 'wasDerivedFrom'", (subject,))
    try:
        gone = _json(kfm_maint("reindex", "--targets", "graph", "--json", "--no-verify"))["counts"]
        assert gone["items_changed"] == 1, "only the item whose links changed is rewritten"
        assert graph_writer.run(link, a=subject, b=source)[0]["n"] == 0
    finally:
        owner_pg.execute("INSERT INTO kfm.prov_links VALUES (%s, 'wasDerivedFrom', %s)", (subject, source))
    back = _json(kfm_maint("reindex", "--targets", "graph", "--json", "--no-verify"))["counts"]
    assert back["items_changed"] == 1 and back["derived_links_created"] == 1
    assert graph_writer.run(link, a=subject, b=source)[0]["n"] == 1
