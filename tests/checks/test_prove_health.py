"""Proofs of the health checks: inject each check's fault into the local stack, see the check fail, restore.

Each proof runs the check in a separate pytest process (tests.helpers.run_check)
with the fault in place and asserts it fails with a message naming the fault.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from kfm_ops import contracts
from kfm_ops.settings import CheckSettings
from tests.helpers import run_check, run_checks, stack_binary
from tests.plugins.baselines import restore_constraint
from tests.plugins.cluster import Standby, committing
from tests.plugins.faults import Holder, injected
from tests.proving import PROOF, assert_fails, assert_fails_injected, assert_passes

BLOCKED_LOCK_GRACE_SECONDS = CheckSettings().max_lock_wait_seconds
CACHE_HIT_MIN_BLOCKS = CheckSettings().min_hit_ratio_blocks
SCRATCH_USER = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")

pytestmark = pytest.mark.devstack

PG = "opschecks/health/test_postgis.py::"
GRAPH = "opschecks/health/test_graph.py::"
SEARCH = "opschecks/health/test_search.py::"
CACHE = "opschecks/health/test_cache.py::"
POLICY = "opschecks/health/test_policy.py::"
LLM = "opschecks/health/test_llm.py::"


# --------------------------------------------------------------------------- PostGIS

@pytest.mark.proves(PG + "test_postgis_reachable")
def test_postgis_down_fails_not_skips() -> None:
    assert_fails(PG + "test_postgis_reachable", "postgis unreachable", "127.0.0.1:1",
                 env={"KFM_POSTGIS__DSN": "postgresql://kfm_reader@127.0.0.1:1/kfm"}, unreachable=True)


@pytest.mark.proves(PG + "test_postgis_versions")
def test_server_older_than_contract(contracts_copy: Any) -> None:
    env = contracts_copy("postgis", lambda c: c.update(min_server_version=990000))
    assert_fails(PG + "test_postgis_versions", "server_version_num", "below the contract minimum 990000", env=env)


@pytest.mark.proves(PG + "test_postgis_versions")
def test_postgis_older_than_contract(contracts_copy: Any) -> None:
    env = contracts_copy("postgis", lambda c: c.update(min_postgis_version="99.1"))
    assert_fails(PG + "test_postgis_versions", "PostGIS", "below the contract minimum 99.1", env=env)


@pytest.mark.proves(PG + "test_postgis_connection_saturation")
def test_connection_saturation(owner_pg: Any, pg_sessions: Any) -> None:
    for _ in range(6):
        pg_sessions("saturation")
    used, capacity = owner_pg.execute("SELECT (SELECT sum(numbackends) FROM pg_stat_database)::int, "
                                      "current_setting('max_connections')::int").fetchone()
    limit = (used - 4) / capacity  # the 6 held sessions put the server over this ratio (real connections)
    assert_fails(PG + "test_postgis_connection_saturation", "connection saturation", f"{PROOF}-saturation ×6",
                 env={"KFM_CHECKS__MAX_CONNECTION_RATIO": f"{limit:.4f}"})


@pytest.mark.proves(PG + "test_postgis_no_long_running_queries")
def test_long_running_query(pg_sessions: Any) -> None:
    busy = Holder(pg_sessions("long-query"), "SELECT pg_sleep(60)")
    time.sleep(2.5)
    assert_fails(PG + "test_postgis_no_long_running_queries", "queries running longer than 1", f"pid {busy.pid}",
                 env={"KFM_CHECKS__MAX_QUERY_SECONDS": "1"})


@pytest.mark.proves(PG + "test_postgis_no_idle_in_transaction")
def test_idle_in_transaction(pg_sessions: Any) -> None:
    conn = _idle_in_transaction(pg_sessions("idle-tx"))  # pg_sessions ends the session (and its transaction)
    assert_fails(PG + "test_postgis_no_idle_in_transaction", "idle in transaction longer than 1",
                 f"pid {conn.info.backend_pid}", env={"KFM_CHECKS__MAX_IDLE_IN_TRANSACTION_SECONDS": "1"})


def _idle_in_transaction(conn: Any) -> Any:
    """Open a transaction on ``conn`` and leave it open for longer than a 1 s threshold."""
    conn.autocommit = False
    conn.execute("SELECT 1")
    time.sleep(2.5)
    return conn


@pytest.mark.proves(PG + "test_postgis_xid_wraparound")
def test_xid_age_over_limit(owner_pg: Any) -> None:
    for _ in range(3):
        owner_pg.execute("SELECT txid_current()")  # each autocommit statement consumes one xid
    age = owner_pg.execute("SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()").fetchone()[0]
    assert age > 1
    assert_fails(PG + "test_postgis_xid_wraparound", "transaction-id age above", "kfm (age",
                 env={"KFM_CHECKS__MAX_XID_AGE": str(age - 1)})


@pytest.mark.proves(PG + "test_postgis_no_blocked_locks")
def test_blocked_lock(pg_sessions: Any) -> None:
    holder = pg_sessions("lock-holder")
    holder.execute("SELECT pg_advisory_lock(hashtext('kfm-proof-lock'))")
    waiter = Holder(pg_sessions("lock-waiter"), "SELECT pg_advisory_lock(hashtext('kfm-proof-lock'))")
    time.sleep(BLOCKED_LOCK_GRACE_SECONDS + 1.5)
    with injected(lambda: None, lambda: holder.execute("SELECT pg_advisory_unlock(hashtext('kfm-proof-lock'))")):
        assert_fails(PG + "test_postgis_no_blocked_locks", "blocked on locks",
                     f"pid {waiter.pid} blocked by [{holder.info.backend_pid}]")
    waiter.thread.join(10)
    waiter.conn.execute("SELECT pg_advisory_unlock_all()")


@pytest.mark.proves(PG + "test_postgis_replication_lag")
def test_configured_standby_missing(scratch_postgres: Any) -> None:
    """A real PostgreSQL with a physical slot and synchronous standby name but no standby attached.

    The shared server's owner role may not create replication slots, so the
    fault is injected into a throw-away cluster and the check pointed at it.
    """
    port, sql = scratch_postgres
    env = {"KFM_POSTGIS__DSN": f"postgresql://{SCRATCH_USER}@127.0.0.1:{port}/postgres", "KFM_POSTGIS__PASSWORD": ""}
    result = run_check(PG + "test_postgis_replication_lag", env=env)
    assert result.outcome == "passed", f"no standby configured yet, expected pass: {result.message}"
    with injected(lambda: sql("SELECT pg_create_physical_replication_slot('kfm_proof_standby')"),
                  lambda: sql("SELECT pg_drop_replication_slot('kfm_proof_standby')")):
        assert_fails(PG + "test_postgis_replication_lag", "replication slots have no standby attached",
                     "kfm_proof_standby", env=env)


LAG = {"KFM_CHECKS__MAX_REPLICATION_LAG_SECONDS": "2"}


@pytest.mark.proves(PG + "test_postgis_replication_lag")
def test_standby_replay_paused_lag_grows_on_the_primary(standby: Standby, pg_sessions: Any) -> None:
    """A real streaming standby (devstack's, pg_basebackup) whose replay is paused while the primary commits: it
    still receives the WAL, applies none of it, and the primary's pg_stat_replication shows its lag growing."""
    assert_passes(PG + "test_postgis_replication_lag", env=LAG)
    with committing(pg_sessions("replica-commits")):
        standby.pause()
        time.sleep(4)
        assert_fails(PG + "test_postgis_replication_lag", "standbys are not streaming within 2s",
                     f"{standby.name}@local (streaming, replay lag", env=LAG)
        standby.resume()
    assert_passes(PG + "test_postgis_replication_lag", env=LAG)


@pytest.mark.proves(PG + "test_postgis_replication_lag")
def test_standby_replay_paused_the_standby_says_so(standby: Standby, pg_sessions: Any) -> None:
    """The same check run against the standby itself: its replay lag, and that replay is paused."""
    env = {**LAG, "KFM_POSTGIS__DSN": standby.dsn}
    assert_passes(PG + "test_postgis_replication_lag", env=env)
    with committing(pg_sessions("replica-commits")):
        standby.pause()
        time.sleep(4)
        assert_fails(PG + "test_postgis_replication_lag", "this standby's replay lag is", "(limit 2s)",
                     "replay is paused", f"127.0.0.1:{standby.service.port}", env=env)
        standby.resume()
    assert_passes(PG + "test_postgis_replication_lag", env=env)


@contextlib.contextmanager
def scanning(port: int) -> Iterator[None]:
    """Sequential scans of the ballast table in a loop: a table over shared_buffers/4 is read through a small
    ring buffer, so nearly every block is a miss (blks_read), scan after scan."""
    stop = threading.Event()

    def scan() -> None:
        with psycopg.connect(host="127.0.0.1", port=port, user=SCRATCH_USER, dbname="postgres",
                             autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("SELECT count(*) FROM hit_ratio_ballast").fetchone()

    worker = threading.Thread(target=scan, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(timeout=30)


@pytest.mark.proves(PG + "test_postgis_cache_hit_ratio")
def test_cache_misses_in_the_window_fail_a_bulk_load_before_it_does_not(scratch_postgres: Any) -> None:
    """A scratch cluster: scans leave its cumulative ratio far below the minimum; while quiet the check passes
    (the misses are history), while the scans go on it fails (the misses are now)."""
    port, sql = scratch_postgres
    with psycopg.connect(host="127.0.0.1", port=port, user=SCRATCH_USER, dbname="postgres", autocommit=True) as conn:
        conn.execute("CREATE TABLE hit_ratio_ballast AS "
                     "SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 200000) g")
        conn.execute("VACUUM ANALYZE hit_ratio_ballast")  # no autovacuum reading the table during a window
    with scanning(port):
        time.sleep(3)
    hit, read = sql("SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = 'postgres'")[0]
    assert read > CACHE_HIT_MIN_BLOCKS and hit / (hit + read) < CheckSettings().min_cache_hit_ratio, (hit, read)
    env = {"KFM_POSTGIS__DSN": f"postgresql://{SCRATCH_USER}@127.0.0.1:{port}/postgres", "KFM_POSTGIS__PASSWORD": ""}
    assert_passes(PG + "test_postgis_cache_hit_ratio", env=env)
    with scanning(port):
        assert_fails(PG + "test_postgis_cache_hit_ratio", "cache hit ratio of database postgres over 3s",
                     "below 0.9", env=env)


# --------------------------------------------------------------------------- check_postgres agreement


def check_postgres(kfm_settings: Any, action: str, *args: str) -> tuple[int, str]:
    """Run one check_postgres action with the reader credentials (password via PGPASSWORD only)."""
    from urllib.parse import urlsplit

    section = kfm_settings.postgis
    dsn = urlsplit(section.dsn)
    env = {**os.environ, "PGPASSWORD": section.password.get_secret_value() if section.password else ""}
    proc = subprocess.run([stack_binary("check_postgres"), f"--action={action}", f"--host={dsn.hostname}",
                           f"--port={dsn.port}", f"--dbname={dsn.path.lstrip('/')}", f"--dbuser={dsn.username}", *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def agreement_actions(kfm_settings: Any) -> dict[str, tuple[str, list[str]]]:
    """Our check → the overlapping check_postgres action, with the same thresholds."""
    checks = kfm_settings.checks
    return {
        "test_postgis_reachable": ("connection", []),
        "test_postgis_connection_saturation": ("backends", [f"--warning={checks.max_connection_ratio:.0%}",
                                                            f"--critical={checks.max_connection_ratio:.0%}"]),
        "test_postgis_xid_wraparound": ("txn_wraparound", [f"--warning={checks.max_xid_age}",
                                                           f"--critical={checks.max_xid_age}"]),
        "test_postgis_no_idle_in_transaction": ("txn_idle", [f"--critical={int(checks.max_idle_in_transaction_seconds)}"
                                                             " seconds"]),
        "test_postgis_no_long_running_queries": ("query_time", [f"--critical={int(checks.max_query_seconds)} seconds"]),
        "test_postgis_no_blocked_locks": ("locks", ["--critical=waiting=1"]),
        "test_postgis_cache_hit_ratio": ("hitratio", ["--include=kfm", f"--warning={checks.min_cache_hit_ratio:.0%}",
                                                      f"--critical={checks.min_cache_hit_ratio:.0%}"]),
    }


def test_check_postgres_agrees_on_healthy_stack(kfm_settings: Any, owner_pg: Any) -> None:
    """On the healthy stack every overlapping check_postgres action is OK and every matching check passes."""
    results = {nodeid.split("::")[1]: r for nodeid, r in run_checks(PG[:-2]).items()}
    hit, read = owner_pg.execute("SELECT blks_hit, blks_read FROM pg_stat_database "
                                 "WHERE datname = current_database()").fetchone()
    disagreements = []
    for check, (action, args) in agreement_actions(kfm_settings).items():
        if action == "hitratio" and hit + read < CACHE_HIT_MIN_BLOCKS:
            continue  # we deliberately accept a ratio over too few blocks; check_postgres has no such floor
        if action == "hitratio" and hit / (hit + read) < kfm_settings.checks.min_cache_hit_ratio:
            # check_postgres reads the counters since the last reset, ours a window: a database that loaded a
            # large catalog earlier (a developer's bench) stays low for check_postgres while healthy now
            continue
        code, output = check_postgres(kfm_settings, action, *args)
        if action == "locks" and code != 0:
            # check_postgres counts a lock wait of any age; ours ignores waits shorter than the grace period
            time.sleep(1)
            code, output = check_postgres(kfm_settings, action, *args)
        assert kfm_settings.postgis.password.get_secret_value() not in output
        ours = results[check].outcome
        if (code == 0) != (ours == "passed"):
            disagreements.append(f"{check}: ours {ours} ({results[check].message[:200]}) vs "
                                 f"check_postgres {action} exit {code}: {output[:200]}")
    assert not disagreements, "\n".join(disagreements)


def test_check_postgres_agrees_on_idle_in_transaction(kfm_settings: Any, pg_sessions: Any) -> None:
    """A session idle in transaction past a lowered threshold: both tools report it."""
    conn = _idle_in_transaction(pg_sessions("idle-tx-agree"))
    code, output = check_postgres(kfm_settings, "txn_idle", "--critical=1 seconds")
    assert code == 2 and "CRITICAL" in output, f"check_postgres txn_idle did not report: exit {code}: {output}"
    assert kfm_settings.postgis.password.get_secret_value() not in output
    assert_fails(PG + "test_postgis_no_idle_in_transaction", f"pid {conn.info.backend_pid}",
                 env={"KFM_CHECKS__MAX_IDLE_IN_TRANSACTION_SECONDS": "1"})


def test_check_postgres_agrees_on_long_query(kfm_settings: Any, pg_sessions: Any) -> None:
    """A query running past a lowered threshold: both tools report it."""
    busy = Holder(pg_sessions("long-query-agree"), "SELECT pg_sleep(60)")
    time.sleep(2.5)
    code, output = check_postgres(kfm_settings, "query_time", "--critical=1 seconds")
    assert code == 2 and "CRITICAL" in output, f"check_postgres query_time did not report: exit {code}: {output}"
    assert_fails(PG + "test_postgis_no_long_running_queries", f"pid {busy.pid}",
                 env={"KFM_CHECKS__MAX_QUERY_SECONDS": "1"})


# --------------------------------------------------------------------------- Neo4j

@pytest.mark.proves(GRAPH + "test_graph_version")
def test_graph_down_fails_version_check() -> None:
    assert_fails(GRAPH + "test_graph_version", "graph unreachable", "127.0.0.1:1",
                 env={"KFM_GRAPH__URL": "bolt://127.0.0.1:1"}, unreachable=True)


@pytest.mark.proves(GRAPH + "test_graph_database_online")
def test_graph_database_missing() -> None:
    """The configured database does not exist (Community edition cannot STOP a database)."""
    assert_fails(GRAPH + "test_graph_database_online", "kfmproofmissing",
                 env={"KFM_GRAPH__DATABASE": "kfmproofmissing"}, unreachable=True)


@pytest.mark.proves(GRAPH + "test_graph_constraints_online")
def test_graph_constraint_dropped(graph_baseline: Any) -> None:
    with injected(lambda: graph_baseline.run("DROP CONSTRAINT kfm_place_id"),
                  lambda: restore_constraint(graph_baseline, "kfm_place_id")):
        assert_fails(GRAPH + "test_graph_constraints_online", "contract constraints are missing", "kfm_place_id")


# --------------------------------------------------------------------------- OpenSearch

@pytest.fixture
def proof_index(search_writer: Any) -> Any:
    """create(name, body): a proof index, deleted at teardown."""
    made: list[str] = []

    def create(suffix: str, body: dict[str, Any], **kwargs: Any) -> str:
        name = f"{PROOF}-{suffix}"
        search_writer.indices.delete(index=name, ignore_unavailable=True)  # one a killed run left
        search_writer.indices.create(index=name, body=body, **kwargs)
        made.append(name)
        return name

    yield create
    for name in made:
        search_writer.indices.delete(index=name, ignore_unavailable=True)


UNALLOCATABLE = {"settings": {"number_of_shards": 1, "number_of_replicas": 0,
                              "index.routing.allocation.require._name": "kfm-proof-no-such-node"}}


@pytest.mark.proves(SEARCH + "test_search_cluster_health")
def test_cluster_red(proof_index: Any) -> None:
    name = proof_index("red", UNALLOCATABLE, wait_for_active_shards=0)
    assert_fails(SEARCH + "test_search_cluster_health", "is red", name)


@pytest.mark.proves(SEARCH + "test_search_cluster_health")
def test_cluster_yellow_not_allowed(proof_index: Any) -> None:
    name = proof_index("yellow", {"settings": {"number_of_shards": 1, "number_of_replicas": 1}})
    assert_fails(SEARCH + "test_search_cluster_health", "is yellow", name, env={"KFM_SEARCH__ALLOW_YELLOW": "false"})


@pytest.mark.proves(SEARCH + "test_search_no_unassigned_primaries")
def test_unassigned_primary(proof_index: Any) -> None:
    name = proof_index("unassigned", UNALLOCATABLE, wait_for_active_shards=0)
    assert_fails(SEARCH + "test_search_no_unassigned_primaries", "primary shards are unassigned", f"{name}[0]")


@pytest.mark.proves(SEARCH + "test_search_no_unassigned_replicas")
def test_unassigned_replica(search_writer: Any, proof_index: Any) -> None:
    """One copy more than there are data nodes: a node holds at most one copy of a shard, so one stays unassigned."""
    nodes = search_writer.cluster.health()["number_of_data_nodes"]
    name = proof_index("replica", {"settings": {"number_of_shards": 1, "number_of_replicas": nodes}})
    assert_fails(SEARCH + "test_search_no_unassigned_replicas", "replica shards are unassigned", f"{name}[0] replica",
                 "same_shard")


@pytest.mark.proves(SEARCH + "test_search_heap_pressure")
def test_heap_pressure_over_limit(search_writer: Any) -> None:
    """The node's real old-generation use, against a limit set below it (a heap cannot be filled on demand
    without taking the shared node down with it)."""
    from kfm_ops.stores.search.nodes import heap_pressure

    lowest = min(heap_pressure(search_writer).values())
    assert lowest > 0.002, f"the old generation holds {lowest:.2%}: nothing to set a limit under"
    assert_fails(SEARCH + "test_search_heap_pressure", "heap pressure above", "Node 1 (127.0.0.1:",
                 env={"KFM_CHECKS__MAX_SEARCH_HEAP_RATIO": f"{lowest / 2:.4f}"})


@pytest.mark.proves(SEARCH + "test_search_alias_single_index")
def test_alias_on_two_indices(search_writer: Any, search_baseline: str, proof_index: Any) -> None:
    contract = contracts.load("search")
    second = proof_index("second", {"settings": contracts.search_index_settings(contract, "dev"),
                                    "mappings": contract["mappings"]})
    with injected(lambda: search_writer.indices.put_alias(index=second, name=contract["alias"]),
                  lambda: search_writer.indices.delete_alias(index=second, name=contract["alias"])):
        assert_fails(SEARCH + "test_search_alias_single_index", "resolves to 2 indices", search_baseline, second)


@pytest.mark.proves(SEARCH + "test_search_disk_watermarks")
def test_index_write_blocked_by_flood_stage(search_writer: Any, proof_index: Any) -> None:
    """The flood-stage consequence on a proof index (read_only_allow_delete), as OpenSearch sets it.

    Lowering the cluster watermarks below the real disk use would write-block every
    index of the shared stack, so that half of the check is proven on its comparison
    helper instead (tests/unit/test_check_helpers.py::test_watermark_comparison).
    """
    name = proof_index("flooded", {"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
    # OpenSearch's disk monitor lifts this block by itself from every index on a node below the
    # high watermark (each cluster.info.update.interval, 30 s)
    assert_fails_injected(
        SEARCH + "test_search_disk_watermarks",
        lambda: search_writer.indices.put_settings(index=name, body={"index.blocks.read_only_allow_delete": True}),
        lambda: _flood_blocked(search_writer, name), "write-blocked by a past flood stage", name)


def _flood_blocked(search_writer: Any, index: str) -> bool:
    body = search_writer.indices.get_settings(index=index, name="index.blocks.read_only_allow_delete",
                                              flat_settings=True)
    # an index without the setting is left out of the answer
    settings = body.get(index, {}).get("settings", {})
    return str(settings.get("index.blocks.read_only_allow_delete")).lower() == "true"


# --------------------------------------------------------------------------- Redis

@pytest.mark.proves(CACHE + "test_cache_ping")
def test_redis_down_fails_not_skips() -> None:
    assert_fails(CACHE + "test_cache_ping", "cache unreachable", "127.0.0.1:1",
                 env={"KFM_CACHE__URL": "redis://127.0.0.1:1/0"}, unreachable=True)


@pytest.fixture
def redis_config(cache_writer: Any) -> Any:
    """set(name, value): CONFIG SET on the stack's Redis, the old value restored at teardown."""
    saved: dict[str, str] = {}

    def set_config(name: str, value: str) -> None:
        saved.setdefault(name, cache_writer.config_get(name)[name])
        cache_writer.config_set(name, value)

    yield set_config
    for name, value in reversed(list(saved.items())):
        cache_writer.config_set(name, value)


@pytest.mark.proves(CACHE + "test_cache_eviction_policy")
def test_eviction_policy_outside_contract(redis_config: Any) -> None:
    redis_config("maxmemory-policy", "allkeys-random")
    assert_fails(CACHE + "test_cache_eviction_policy", "maxmemory-policy is allkeys-random")


@pytest.mark.proves(CACHE + "test_cache_memory_ratio")
def test_memory_near_maxmemory(cache_writer: Any, redis_config: Any) -> None:
    """maxmemory lowered to just above the memory in use (noeviction: nothing is evicted, writes may fail briefly)."""
    redis_config("maxmemory-policy", "noeviction")

    def lower_maxmemory() -> None:
        redis_config("maxmemory", str(int(int(cache_writer.info("memory")["used_memory"]) / 0.93)))

    def near_limit() -> bool:  # Redis gives memory back on its own (idle clients' buffers are shrunk)
        memory = cache_writer.info("memory")
        return int(memory["used_memory"]) / int(memory["maxmemory"]) > 0.90

    assert_fails_injected(CACHE + "test_cache_memory_ratio", lower_maxmemory, near_limit, "of maxmemory", "above 90%")


@pytest.mark.proves(CACHE + "test_cache_no_evictions")
def test_keys_evicted(scratch_redis: Any) -> None:
    """Real evictions, in a throw-away Redis (evicting on the shared one would drop real cache entries)."""
    port, client = scratch_redis
    payload = "x" * 4096
    for i in range(2000):
        client.set(f"{PROOF}:evict:{i}", payload, ex=600)
        if i % 100 == 0 and int(client.info("stats")["evicted_keys"]) > 0:
            break
    assert int(client.info("stats")["evicted_keys"]) > 0
    assert_fails(CACHE + "test_cache_no_evictions", "keys were evicted", f"127.0.0.1:{port}",
                 env={"KFM_CACHE__URL": f"redis://127.0.0.1:{port}/0", "KFM_CACHE__USERNAME": "",
                      "KFM_CACHE__PASSWORD": ""})


# --------------------------------------------------------------------------- OPA

@pytest.mark.proves(POLICY + "test_policy_healthy")
def test_opa_down_fails_not_skips() -> None:
    assert_fails(POLICY + "test_policy_healthy", "policy unreachable", "127.0.0.1:1",
                 env={"KFM_POLICY__URL": "http://127.0.0.1:1"}, unreachable=True)


@pytest.mark.proves(POLICY + "test_policy_bundle_loaded")
def test_opa_without_kfm_bundle(scratch_opa: Any) -> None:
    """A real OPA that runs, but without the KFM bundle."""
    url = scratch_opa(None)
    assert_fails(POLICY + "test_policy_bundle_loaded", "data.kfm.meta.bundle", "undefined",
                 env={"KFM_POLICY__URL": url})


FAIL_OPEN_STAC = 'package kfm.stac\n\ndecision := {"allow": true, "deny": []}\n'
META = 'package kfm.meta\n\nbundle := {"name": "kfm", "revision": "proof", "packages": ["kfm.stac"]}\n'


@pytest.mark.proves(POLICY + "test_policy_fail_closed")
def test_opa_fail_open_policy(scratch_opa: Any) -> None:
    """A real OPA serving a kfm.stac policy that allows anything (not fail-closed)."""
    url = scratch_opa({"stac.rego": FAIL_OPEN_STAC, "meta.rego": META})
    assert httpx.post(f"{url}/v1/data/kfm/stac/decision", json={"input": {"item": "garbage"}}).json()["result"]["allow"]
    assert_fails(POLICY + "test_policy_fail_closed", "not fail-closed", "a malformed item", "no input",
                 env={"KFM_POLICY__URL": url})


@pytest.mark.proves(POLICY + "test_policy_fail_closed")
def test_opa_denies_without_a_reason(scratch_opa: Any) -> None:
    """A gate that denies everything but never says why: no reason reaches the operator."""
    url = scratch_opa({"stac.rego": FAIL_OPEN_STAC.replace('"allow": true', '"allow": false'), "meta.rego": META})
    assert_fails(POLICY + "test_policy_fail_closed", "denies a malformed item without a reason", "'deny'",
                 env={"KFM_POLICY__URL": url})


# --------------------------------------------------------------------------- LLM

@pytest.mark.proves(LLM + "test_llm_model_listed")
def test_model_not_served() -> None:
    assert_fails(LLM + "test_llm_model_listed", "model 'kfm-proof-no-such-model' is not served",
                 env={"KFM_LLM__MODEL": "kfm-proof-no-such-model"})


@pytest.mark.proves(LLM + "test_llm_canary_completion")
def test_canary_over_latency_budget(kfm_settings: Any, toxiproxy: Any) -> None:
    """Real latency: 1.5 s added by a Toxiproxy proxy in front of the runtime, against a 1 s budget."""
    from urllib.parse import urlsplit

    upstream = urlsplit(kfm_settings.llm.url)
    address = toxiproxy("llm", f"{upstream.hostname}:{upstream.port}", 1500)
    assert_fails(LLM + "test_llm_canary_completion", "over the 1.0s budget",
                 env={"KFM_LLM__URL": f"http://{address}", "KFM_LLM__LATENCY_BUDGET": "1"})



# --------------------------------------------------------------------------- least privilege

PRIV = "opschecks/health/test_privileges.py::"


def _owner_settings() -> dict[str, str]:
    """The owner accounts of the stack under test (its settings, whatever ports it runs on)."""
    from kfm_ops.settings import load_settings

    settings = load_settings()
    pg, cache = settings.postgis, settings.cache
    assert pg and pg.write_dsn and pg.write_password and cache and cache.write_username and cache.write_password
    return {"KFM_POSTGIS__WRITE_DSN": pg.write_dsn, "KFM_POSTGIS__WRITE_PASSWORD": pg.write_password.get_secret_value(),
            "KFM_CACHE__WRITE_USERNAME": cache.write_username,
            "KFM_CACHE__WRITE_PASSWORD": cache.write_password.get_secret_value()}


@pytest.mark.proves(PRIV + "test_postgis_check_role_cannot_write")
def test_checks_given_the_owner_role() -> None:
    stack = _owner_settings()
    message = assert_fails(PRIV + "test_postgis_check_role_cannot_write", "the check role could write",
                           "the role can write kfm.",
                           env={"KFM_POSTGIS__DSN": stack["KFM_POSTGIS__WRITE_DSN"],
                                "KFM_POSTGIS__PASSWORD": stack["KFM_POSTGIS__WRITE_PASSWORD"]})
    assert stack["KFM_POSTGIS__WRITE_PASSWORD"] not in message


@pytest.mark.proves(PRIV + "test_cache_check_user_cannot_write")
def test_checks_given_the_cache_owner() -> None:
    stack = _owner_settings()
    assert_fails(PRIV + "test_cache_check_user_cannot_write", "the check user could write",
                 "the user 'default' may run write commands",
                 env={"KFM_CACHE__USERNAME": stack["KFM_CACHE__WRITE_USERNAME"],
                      "KFM_CACHE__PASSWORD": stack["KFM_CACHE__WRITE_PASSWORD"]})


SLOT_LIMIT = {"KFM_CHECKS__MAX_SLOT_BEHIND_MB": "1"}


@pytest.mark.proves(PG + "test_postgis_change_slots")
def test_logical_slot_nobody_consumes(owner_pg: Any) -> None:
    """A logical slot on the shared server that nobody reads while 2 MB of WAL are written: the server keeps it."""
    assert_passes(PG + "test_postgis_change_slots", env=SLOT_LIMIT)
    with injected(lambda: owner_pg.execute("SELECT pg_create_logical_replication_slot('kfm_proof_slot', "
                                           "'test_decoding')"),
                  lambda: owner_pg.execute("SELECT pg_drop_replication_slot('kfm_proof_slot')")):
        owner_pg.execute("SELECT pg_logical_emit_message(false, 'kfm-proof', repeat('x', 2000000))")
        assert_fails(PG + "test_postgis_change_slots", "1 logical slots hold more than 1 MiB of WAL",
                     "kfm_proof_slot", env=SLOT_LIMIT)


@pytest.mark.proves(PG + "test_postgis_change_slots")
def test_change_slot_configured_but_missing() -> None:
    """KFM_POSTGIS__CHANGE_SLOT names slots no sync has created: the check names each missing one."""
    assert_fails(PG + "test_postgis_change_slots", "change slots of KFM_POSTGIS__CHANGE_SLOT=kfm_proof_absent do not "
                 "exist", "kfm_proof_absent_search", env={"KFM_POSTGIS__CHANGE_SLOT": "kfm_proof_absent"})


@pytest.mark.proves(PG + "test_postgis_change_slots")
def test_logical_slot_lost_its_wal(scratch_postgres: Any) -> None:
    """A throw-away PostgreSQL that may keep only 1 MB for a slot (max_slot_wal_keep_size): WAL segments pass
    and a checkpoint removes them; the slot's wal_status becomes 'lost'."""
    port, sql = scratch_postgres
    env = {"KFM_POSTGIS__DSN": f"postgresql://{SCRATCH_USER}@127.0.0.1:{port}/postgres", "KFM_POSTGIS__PASSWORD": ""}
    sql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    sql("SELECT pg_reload_conf()")
    sql("SELECT pg_create_logical_replication_slot('kfm_proof_lost', 'test_decoding')")
    assert_passes(PG + "test_postgis_change_slots", env=env)
    for _ in range(4):
        sql("SELECT pg_logical_emit_message(false, 'kfm-proof', repeat('x', 1000000))")
        sql("SELECT pg_switch_wal()")
    sql("CHECKPOINT")
    assert_fails(PG + "test_postgis_change_slots", "1 logical slots lost the WAL they had not consumed",
                 "kfm_proof_lost", env=env)
