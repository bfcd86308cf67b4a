"""The search checks, the blue/green rebuild and the fault matrix's search cells on a two-node cluster.

:func:`tests.plugins.cluster.two_node_search` starts the second node for this module (the default stack
has one) and gives the dev environment a topology of 2 primaries and 1 replica. The rebuild loads with no
replicas and refresh off, then raises the replicas and waits for green before it swaps; with a node
stopped, the cluster is yellow: the health checks fail unless yellow is allowed, and a rebuild fails at its
``replicas`` step (exit 5) naming the index and the unassigned copies, the live alias untouched.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from kfm_ops import contracts
from tests import fingerprint
from tests.helpers import ROOT, kfm_maint, run_checks
from tests.plugins.cluster import PRIMARIES, REPLICAS, TwoNodes
from tests.test_fault_matrix import FAULTS, run_cell

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

ALIAS = contracts.load("search")["alias"]
HEALTH = "opschecks/health/test_search.py::"
YELLOW_FAILS = {HEALTH + "test_search_cluster_health", HEALTH + "test_search_no_unassigned_replicas"}
RESULTS = ROOT / "reports" / "fault-matrix-two-nodes.json"
_observed: list[dict[str, Any]] = []


def _search_checks(env: dict[str, str]) -> dict[str, Any]:
    results = run_checks("opschecks", "-m", "search", env=env)
    assert {HEALTH + "test_search_heap_pressure", *YELLOW_FAILS} <= set(results) and len(results) >= 14, sorted(results)
    return results


def _live(client: Any) -> str:
    (index,) = client.indices.get_alias(name=ALIAS)
    return str(index)


def test_the_rebuild_loads_without_replicas_then_replicates_before_the_swap(two_node_search: TwoNodes) -> None:
    """A forced rebuild, watched from outside: the new index is loaded with 0 replicas and refresh off, its
    replicas are raised only after the load, and the alias moves to it once every copy is started."""
    client = two_node_search.client
    before = _live(client)
    seen: list[tuple[str, str, str, bool]] = []  # (replicas, refresh_interval, health, aliased) of the new index
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                found = client.indices.get(index="kfm-items-v*")
                for name, body in found.items():
                    if name > before:
                        index = body["settings"]["index"]
                        health = client.cluster.health(index=name)["status"]
                        seen.append((index["number_of_replicas"], index.get("refresh_interval", "1s"), health,
                                     ALIAS in body.get("aliases", {})))
            except Exception:  # the index may vanish between two requests (prune)
                pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc = kfm_maint("reindex", "--targets", "search", "--force", "--no-verify", env=two_node_search.env)
    finally:
        done.set()
        watcher.join(10)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"raise replicas to {REPLICAS} (dev) and wait for green" in proc.stdout
    assert seen and seen[0][:2] == ("0", "-1"), f"the load did not start with 0 replicas, refresh off: {seen[:3]}"
    raised = [s for s in seen if s[0] != "0"]
    assert raised and all(s[1] != "-1" for s in raised), "replicas were raised while refresh was still off"
    assert all(s[2] == "green" for s in seen if s[3]), "the alias pointed at an index that was not green"
    live = _live(client)
    assert live != before
    shards = client.cat.shards(index=live, format="json", h="shard,prirep,state,id")
    assert len(shards) == PRIMARIES * (1 + REPLICAS) and all(s["state"] == "STARTED" for s in shards)
    for number in {s["shard"] for s in shards}:  # the two copies of every shard live on different nodes
        assert len({s["id"] for s in shards if s["shard"] == number}) == 1 + REPLICAS
    assert client.cluster.health()["status"] == "green"


def test_every_search_check_passes_on_two_nodes(two_node_search: TwoNodes) -> None:
    results = _search_checks(two_node_search.env)
    failed = {k: v.message[:300] for k, v in results.items() if v.outcome != "passed"}
    assert not failed, failed


@pytest.mark.proves(HEALTH + "test_search_cluster_health")
@pytest.mark.proves(HEALTH + "test_search_no_unassigned_replicas")
def test_one_node_stopped_is_yellow_fails_unless_allowed(two_node_search: TwoNodes) -> None:
    """Node 2 stops: every shard still has its primary on node 1 (the data is all there), its replicas are
    unassigned. The two yellow checks fail naming them; the rest pass; allowing yellow passes them."""
    two_node_search.stop_node2()
    live = _live(two_node_search.client)
    results = _search_checks(two_node_search.env)
    failed = {k for k, v in results.items() if v.outcome != "passed"}
    assert failed == YELLOW_FAILS, {k: results[k].message[:300] for k in failed ^ YELLOW_FAILS}
    assert "is yellow" in results[HEALTH + "test_search_cluster_health"].message
    replicas = results[HEALTH + "test_search_no_unassigned_replicas"].message
    assert "replica shards are unassigned (1 data nodes)" in replicas
    assert f"{live}[0] replica (NODE_LEFT)" in replicas and f"{live}[1] replica (NODE_LEFT)" in replicas
    allowed = _search_checks({**two_node_search.env, "KFM_SEARCH__ALLOW_YELLOW": "true"})
    assert {k for k, v in allowed.items() if v.outcome == "failed"} == set()
    assert allowed[HEALTH + "test_search_no_unassigned_replicas"].outcome == "skipped"


def test_a_rebuild_with_a_node_stopped_fails_at_replicas_and_leaves_the_alias(two_node_search: TwoNodes,
                                                                               owner_pg: Any) -> None:
    """Still one node: the new index cannot get its replicas; after KFM_SEARCH__GREEN_TIMEOUT the run fails
    (exit 5) at step 'replicas', naming the index and its unassigned copies; the alias stays, the index goes."""
    client = two_node_search.client
    assert client.cluster.health()["number_of_nodes"] == 1, "node 2 should still be stopped"
    before = _live(client)
    proc = kfm_maint("reindex", "--targets", "search", "--force", "--no-verify",
                     env={**two_node_search.env, "KFM_SEARCH__GREEN_TIMEOUT": "5"})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 5, output
    new = next(word for word in output.split() if word.startswith("kfm-items-v") and word > before)
    assert "failed at step 'replicas'" in output and f"index {new} not green after 5s" in output, output
    assert f"{new}[0] replica (" in output and "(1 data nodes)" in output and "Traceback" not in output
    assert _live(client) == before, "the live alias moved"
    assert not client.indices.exists(index=new), "the half-built index was left behind"
    outcome, error = owner_pg.execute("SELECT outcome, error FROM kfm_ops.audit_ledger WHERE action = "
                                      "'reindex-search' ORDER BY started_at DESC LIMIT 1").fetchone()
    assert outcome == "failed" and "replicas" in error


def test_node_back_the_cluster_is_green_and_checks_pass(two_node_search: TwoNodes) -> None:
    two_node_search.start_node2()
    assert two_node_search.client.cluster.health()["status"] == "green"
    results = _search_checks(two_node_search.env)
    assert all(v.outcome == "passed" for v in results.values()), \
        {k: v.message[:300] for k, v in results.items() if v.outcome != "passed"}


# --------------------------------------------------------------------------- the fault matrix, two nodes

@pytest.fixture(scope="module")
def _write_results() -> Any:
    yield
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(_observed, indent=2))


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_cell_on_two_nodes(fault: str, two_node_search: TwoNodes, _write_results: Any, owner_pg: Any,
                                 search_writer: Any, graph_writer: Any, cache_writer: Any) -> None:
    """The search row of the fault matrix against the two-node cluster (node 1 behind the proxy)."""
    before = fingerprint.everything(owner_pg, search_writer, graph_writer, cache_writer)
    run_cell("search", fault, _observed, env=two_node_search.env, label="search (2 nodes)")
    after = fingerprint.everything(owner_pg, search_writer, graph_writer, cache_writer)
    for found in (before, after):
        for table in ("kfm_ops.audit_ledger", "kfm_ops.sync_watermarks", "kfm_ops.check_runs",
                      "kfm_ops.check_results"):
            found["postgis"].pop(table, None)
    assert after == before, "a faulted run changed a store"


def test_fault_cell_node_stopped(two_node_search: TwoNodes, _write_results: Any) -> None:
    """One node gone: the smoke checks fail (exit 1, yellow) and a forced rebuild fails at 'replicas' (exit 5),
    each within the bound, without a traceback."""
    two_node_search.stop_node2()
    try:
        for what, args, code in (
                ("smoke checks", ["check", "--", "-m", "search and smoke", "-q", "-p", "no:cacheprovider"], 1),
                ("kfm-maint reindex --targets search --force",
                 ["reindex", "--targets", "search", "--force", "--no-verify"], 5)):
            started = time.monotonic()
            proc = kfm_maint(*args, env={**two_node_search.env, "KFM_SEARCH__GREEN_TIMEOUT": "5"})
            output = proc.stdout + proc.stderr
            lines = output.splitlines()
            line = next((ln for ln in lines if "failed at step" in ln),
                        next((ln for ln in lines if "FAILED" in ln), ""))
            _observed.append({"service": "search (2 nodes)", "fault": "node_stopped", "run": what,
                              "exit": proc.returncode, "seconds": round(time.monotonic() - started, 1),
                              "traceback": "Traceback" in output, "message": line[:220]})
            assert proc.returncode == code and "Traceback" not in output, output[-3000:]
    finally:
        two_node_search.start_node2()
