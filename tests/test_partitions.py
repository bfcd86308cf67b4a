"""Partitioned runs on the local stack: a coordinator and its workers, one snapshot, a partition retried alone.

``kfm-maint reindex|sync … --partitions N`` coordinates; ``--partition i/N`` workers run as separate
processes (as a Kubernetes Indexed Job's pods would), in parallel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from kfm_ops.derive import DERIVED_SQL_FOR_IDS
from kfm_ops.digest import Digest
from kfm_ops.partition import Partition
from kfm_ops.stores.postgis import PUBLISHED_ITEMS
from tests import toxiproxy
from tests.helpers import ROOT, run_checks
from tests.pipeline import delete_item, retire_dataset
from tests.plugins.cluster import Standby
from tests.plugins.faults import documents_deleted
from tests.proving import assert_failed

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

ALIAS = "kfm-items"
CON = "opschecks/consistency/test_cross_store.py::"


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "maintenance.cli", *args, "--no-verify", "--json"], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _result(proc: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    try:
        found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"no JSON result (exit {proc.returncode}):\n{out}\n{err[-3000:]}") from None
    found["exit"], found["stderr"] = proc.returncode, err
    return found


def _coordinated(owner_pg: Any, action: str, proc: subprocess.Popen[str]) -> str:
    """The run_id of the coordinator once its partitions are open (its snapshot exported)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        row = owner_pg.execute("SELECT p.run_id FROM kfm_ops.run_partitions p JOIN kfm_ops.audit_ledger l "
                               "USING (run_id) WHERE l.action = %s AND l.outcome = 'running' LIMIT 1",
                               (action,)).fetchone()
        if row:
            return str(row[0])
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the coordinator never opened its partitions")


def _parts(owner_pg: Any, run_id: str) -> list[dict[str, Any]]:
    return owner_pg.dicts("SELECT part, outcome, attempts, counts, error FROM kfm_ops.run_partitions "
                          "WHERE run_id = %s ORDER BY part", (run_id,))


def _touch(owner_pg: Any, offset: int, n: int = 1) -> list[str]:
    """Pipeline-style updates of ``n`` published items (title, content hash, updated_at)."""
    ids = [r[0] for r in owner_pg.rows(f"SELECT id FROM {PUBLISHED_ITEMS} ORDER BY id LIMIT %s OFFSET %s",
                                       (n, offset))]
    for item in ids:
        owner_pg.execute("UPDATE kfm.items SET title = title || ' ·', content_hash = encode(sha256(convert_to("
                         "content_hash || 'partition', 'UTF8')), 'hex'), updated_at = now() WHERE id = %s", (item,))
    return ids


def _synced(owner_pg: Any, targets: str = "search,graph", env: dict[str, str] | None = None) -> tuple[dict[str, Any],
                                                                                                   str]:
    """A sync of ``targets`` in two partitions, each worker a process of its own (the cache is the coordinator's
    own): the coordinator's result and run_id, once it and its workers all succeeded."""
    coordinator = _start("sync", "--targets", targets, "--partitions", "2", "--partition-wait", "300", env=env)
    run_id = _coordinated(owner_pg, "sync", coordinator)
    derived = ",".join(t for t in targets.split(",") if t != "cache")
    workers = [_start("sync", "--targets", derived, "--partition", f"{i}/2", env=env) for i in range(2)]
    done = [_result(w) for w in workers]
    assert [w["exit"] for w in done] == [0, 0], done
    result = _result(coordinator)
    assert result["exit"] == 0, result
    return result, run_id


def _part(item: str) -> int:
    """The index of the partition (of two) that holds ``item``."""
    from kfm_ops import buckets

    return next(i for i in range(2) if Partition(i, 2).holds(buckets.fields(item, "")[0]))


def _clean(*checks: str) -> None:
    results = run_checks(*(CON + c for c in checks))
    assert all(r.outcome == "passed" for r in results.values()), {k: r.message[:300] for k, r in results.items()}


def test_two_workers_load_the_coordinators_snapshot_in_parallel(owner_pg: Any, search_writer: Any) -> None:
    """The coordinator exports its snapshot; a change committed after it is invisible to both workers (their
    share of the index is the snapshot's), so the coordinator's first convergence round finds exactly it."""
    before = next(iter(search_writer.indices.get_alias(name=ALIAS)))
    coordinator = _start("reindex", "--targets", "search", "--partitions", "2", "--partition-wait", "300")
    run_id = _coordinated(owner_pg, "reindex-search", coordinator)
    (changed,) = _touch(owner_pg, 40)  # after the snapshot: the workers must not see it
    workers = [_start("reindex", "--targets", "search", "--partition", f"{i}/2") for i in range(2)]
    done = [_result(w) for w in workers]
    result = _result(coordinator)
    assert [w["exit"] for w in done] == [0, 0] and result["exit"] == 0, (done, result)
    counts = result["counts"]
    assert counts["rounds"][0] == 1, counts  # the one change committed after the snapshot
    parts = _parts(owner_pg, run_id)
    assert [(p["part"], p["outcome"], p["attempts"]) for p in parts] == [(0, "succeeded", 1), (1, "succeeded", 1)]
    loaded = [p["counts"]["documents_loaded"] for p in parts]
    assert all(loaded) and sum(loaded) == counts["documents_loaded"] == counts["verified"]
    assert Digest.combine(Digest(*p["counts"]["digest"]) for p in parts).count == sum(loaded)
    new = counts["index"]
    assert new != before and sorted(search_writer.indices.get_alias(name=ALIAS)) == [new]
    for part in (Partition(0, 2), Partition(1, 2)):  # each worker loaded its own buckets, and only those
        worker = next(w for w in done if w["counts"]["partition"] == part.label)
        assert worker["counts"]["coordinator"] == run_id
    assert search_writer.get(index=ALIAS, id=changed)["_source"]["content_hash"] == \
        owner_pg.scalar("SELECT content_hash FROM kfm.items WHERE id = %s", (changed,))
    _clean("test_search_matches_canonical")


def test_a_failed_partition_is_retried_alone_on_the_same_snapshot(owner_pg: Any, search_writer: Any) -> None:
    """Worker 1/2 loses its connection to the cluster mid-load: its row says failed; run again alone, it
    succeeds on the same snapshot, the coordinator completes; a worker of a done partition does nothing."""
    coordinator = _start("reindex", "--targets", "search", "--partitions", "2", "--partition-wait", "300")
    run_id = _coordinated(owner_pg, "reindex-search", coordinator)
    assert _result(_start("reindex", "--targets", "search", "--partition", "0/2"))["exit"] == 0
    with toxiproxy.proxy("partition-cut", toxiproxy.upstream("search")) as proxy:
        proxy.toxic("latency", "downstream", latency=100)  # small bulk requests, each slowed: a long load
        worker = _start("reindex", "--targets", "search", "--partition", "1/2", "--batch-size", "20",
                        env={**toxiproxy.through("search", proxy.port), "KFM_SEARCH__QUERY_TIMEOUT": "2"})
        deadline = time.monotonic() + 60
        while _parts(owner_pg, run_id)[1]["outcome"] != "running" and time.monotonic() < deadline:
            assert worker.poll() is None, worker.communicate()
            time.sleep(0.05)
        time.sleep(1)  # a few batches in
        proxy.toxic("timeout", "downstream", timeout=0)  # then the cluster stops answering it
        failed = _result(worker)
    assert failed["exit"] in (4, 5) and "Traceback" not in failed["stderr"], failed
    row = _parts(owner_pg, run_id)[1]
    assert (row["outcome"], row["attempts"]) == ("failed", 1) and row["error"], row
    assert coordinator.poll() is None, "the coordinator gave up on a partition that can still be retried"
    retried = _result(_start("reindex", "--targets", "search", "--partition", "1/2"))
    assert retried["exit"] == 0 and retried["counts"]["attempt"] == 2, retried
    result = _result(coordinator)
    assert result["exit"] == 0, result
    assert [(p["outcome"], p["attempts"]) for p in _parts(owner_pg, run_id)] == [("succeeded", 1), ("succeeded", 2)]
    ledger = owner_pg.rows("SELECT action, outcome FROM kfm_ops.audit_ledger WHERE started_at >= "
                           "(SELECT started_at FROM kfm_ops.audit_ledger WHERE run_id = %s) ORDER BY started_at",
                           (run_id,))
    assert ledger == [("reindex-search", "succeeded"), ("reindex-search-partition", "succeeded"),
                      ("reindex-search-partition", "failed"), ("reindex-search-partition", "succeeded")], ledger
    _clean("test_search_matches_canonical")


def test_a_worker_whose_coordinator_ends_stops_and_records_the_failure(owner_pg: Any, search_writer: Any) -> None:
    """The coordinator is stopped (SIGTERM) while worker 0/2 loads slowly: the coordinator discards its index,
    the worker fails instead of loading into nothing, and its row says failed."""
    before = sorted(search_writer.indices.get_alias(name=ALIAS))
    coordinator = _start("reindex", "--targets", "search", "--partitions", "2", "--partition-wait", "300")
    run_id = _coordinated(owner_pg, "reindex-search", coordinator)
    with toxiproxy.proxy("partition-slow", toxiproxy.upstream("search")) as proxy:
        proxy.toxic("latency", "downstream", latency=150)
        worker = _start("reindex", "--targets", "search", "--partition", "0/2", "--batch-size", "20",
                        env=toxiproxy.through("search", proxy.port))
        deadline = time.monotonic() + 60
        while _parts(owner_pg, run_id)[0]["outcome"] != "running" and time.monotonic() < deadline:
            assert worker.poll() is None, worker.communicate()
            time.sleep(0.05)
        coordinator.terminate()
        stopped = _result(coordinator)
        failed = _result(worker)
    assert stopped["exit"] != 0 and failed["exit"] != 0, (stopped, failed)
    assert "Traceback" not in failed["stderr"], failed["stderr"][-3000:]
    row = _parts(owner_pg, run_id)[0]
    assert row["outcome"] == "failed" and row["error"], row
    assert owner_pg.scalar("SELECT outcome FROM kfm_ops.audit_ledger WHERE run_id = %s", (run_id,)) != "succeeded"
    assert sorted(search_writer.indices.get_alias(name=ALIAS)) == before


def test_a_coordinator_whose_partitions_never_come_fails_and_leaves_the_alias(owner_pg: Any,
                                                                             search_writer: Any) -> None:
    before = sorted(search_writer.indices.get_alias(name=ALIAS))
    result = _result(_start("reindex", "--targets", "search", "--partitions", "2", "--partition-wait", "3"))
    assert result["exit"] == 5, result
    message = result["error"]["message"]
    assert "failed at step 'partitions'" in message and "2 of 2 partitions not done after 3s" in message
    assert "0/2 pending; 1/2 pending" in message
    assert sorted(search_writer.indices.get_alias(name=ALIAS)) == before
    assert not [n for n in search_writer.indices.get(index="kfm-items-v*") if n > before[0]], "left a new index"


def test_a_worker_without_a_coordinator_says_what_to_start() -> None:
    result = _result(_start("reindex", "--targets", "search", "--partition", "0/3", "--partition-wait", "1"))
    assert result["exit"] == 5, result
    assert "no reindex-search run is waiting for partition 0/3" in result["error"]["message"]
    assert "--partitions 3" in result["error"]["hint"]


def test_a_partitioned_sync_converges_every_store_and_records_one_watermark(owner_pg: Any) -> None:
    changed = _touch(owner_pg, 60, n=8)
    result, run_id = _synced(owner_pg, "search,graph,cache")
    counts = result["counts"]
    # the graph also re-links items changed since its last sync (less a margin): earlier tests' changes too
    assert counts["search"]["upserted"] == len(changed) <= counts["graph"]["upserted"], counts
    watermarks = dict(owner_pg.rows("SELECT store, run_id::text FROM kfm_ops.sync_watermarks"))
    assert watermarks["search"] == watermarks["graph"] == run_id
    assert owner_pg.scalar("SELECT watermark FROM kfm_ops.sync_watermarks WHERE store = 'search'") < \
        owner_pg.scalar("SELECT ended_at FROM kfm_ops.audit_ledger WHERE run_id = %s", (run_id,))
    _clean("test_search_matches_canonical", "test_graph_matches_canonical")


def _derived_hashes(search_writer: Any, graph_writer: Any, item: str) -> tuple[str, str]:
    """The content hash of ``item``'s search document and of its graph node."""
    (node,) = graph_writer.run("MATCH (i:Item {id: $id}) RETURN i.content_hash AS h", id=item)
    return search_writer.get(index=ALIAS, id=item)["_source"]["content_hash"], node["h"]


def test_a_partitioned_sync_reading_the_standby_records_what_it_replayed(standby: Standby, owner_pg: Any,
                                                                         search_writer: Any, graph_writer: Any,
                                                                         kfm_settings: Any) -> None:
    """The replica configured, the coordinator's snapshot is the standby's and its workers join it there. Replay
    paused between two changes: the stores converge to what the standby had replayed (the first changes, in both
    partitions; not the second) and both watermarks are its last replayed commit, before the second change.
    Replay resumed, the next partitioned sync brings the second change and moves the watermarks past it."""
    env = {**standby.replica_env, "KFM_POSTGIS__REPLICA_MAX_WAIT": "2"}
    hash_sql = "SELECT content_hash FROM kfm.items WHERE id = %s"
    seen = _touch(owner_pg, 120, n=6)
    assert {_part(i) for i in seen} == {0, 1}, seen  # each worker has a replayed change to bring
    standby.catch_up(owner_pg)
    standby.pause()
    try:
        (unseen,) = _touch(owner_pg, 140)
        changed_at = owner_pg.scalar("SELECT updated_at FROM kfm.items WHERE id = %s", (unseen,))
        result, run_id = _synced(owner_pg, env=env)
        assert "replica.behind" in result["stderr"], result["stderr"][-3000:]
        replayed = standby.replayed_at(str(kfm_settings.postgis.password.get_secret_value()))
        watermarks = dict(owner_pg.rows("SELECT store, watermark FROM kfm_ops.sync_watermarks WHERE run_id::text = %s",
                                        (run_id,)))
        assert watermarks == {"search": replayed, "graph": replayed} and replayed < changed_at, \
            (watermarks, replayed, changed_at)
        for item in seen:
            canonical = owner_pg.scalar(hash_sql, (item,))
            assert _derived_hashes(search_writer, graph_writer, item) == (canonical, canonical), item
        assert owner_pg.scalar(hash_sql, (unseen,)) not in _derived_hashes(search_writer, graph_writer, unseen)
    finally:
        standby.resume()
    _, run_id = _synced(owner_pg, env=env)
    assert all(w > changed_at for (w,) in owner_pg.rows("SELECT watermark FROM kfm_ops.sync_watermarks "
                                                        "WHERE store IN ('search', 'graph')"))
    canonical = owner_pg.scalar(hash_sql, (unseen,))
    assert _derived_hashes(search_writer, graph_writer, unseen) == (canonical, canonical)
    _clean("test_search_matches_canonical", "test_graph_matches_canonical")


def _links(graph_writer: Any, item: str) -> list[str]:
    """The ids ``item``'s graph node has a WAS_DERIVED_FROM link to."""
    return sorted(r["o"] for r in graph_writer.run("MATCH (:Item {id: $id})-[:WAS_DERIVED_FROM]->(o:Item) "
                                                   "RETURN o.id AS o", id=item))


@pytest.mark.usefixtures("catalog_restored")
def test_a_partitioned_sync_relinks_what_was_derived_from_another_partitions_leavers(owner_pg: Any,
                                                                                      search_writer: Any,
                                                                                      graph_writer: Any) -> None:
    """An item deleted and a dataset retired (its items in both partitions), each the source of an item of another
    dataset that lies in the other partition. After a sync in two partitions: what left is gone from the index and
    the graph, each derived item's links (and its links_hash) are the canonical store's again — rewritten by the
    worker of the partition that held what left, not by its own — and every consistency check passes, the full
    content comparison of the graph included. The links_hash is asserted directly too: to the checks, a derived
    item dated by a dataset retired this recently is pending (within the transaction margin), not yet due."""
    links = owner_pg.rows(f"SELECT l.subject, s.dataset_id, l.object, o.dataset_id FROM kfm.prov_links l "
                          f"JOIN {PUBLISHED_ITEMS} s ON s.id = l.subject JOIN {PUBLISHED_ITEMS} o ON o.id = l.object "
                          "WHERE l.relation = 'wasDerivedFrom' ORDER BY 1, 3")
    across = [r for r in links if _part(r[0]) != _part(r[2]) and r[1] != r[3]]
    derived, derived_set, gone, gone_set = across[0]
    derived2, _, source2, retired = next(r for r in across if r[3] not in (derived_set, gone_set) and gone not in r)
    leaving = [r[0] for r in owner_pg.rows(f"SELECT id FROM {PUBLISHED_ITEMS} WHERE dataset_id = %s", (retired,))]
    assert {_part(i) for i in leaving} == {0, 1}, retired  # the retirement is every partition's work
    assert gone in _links(graph_writer, derived) and source2 in _links(graph_writer, derived2)
    hashes = "UNWIND $ids AS id MATCH (i:Item {id: id}) RETURN i.id AS id, i.links_hash AS h"
    before = {r["id"]: r["h"] for r in graph_writer.run(hashes, ids=[derived, derived2])}

    delete_item(owner_pg, gone, gone_set)
    retire_dataset(owner_pg, retired)
    counts = _synced(owner_pg, "search,graph,cache")[0]["counts"]

    assert counts["search"]["deleted"] == counts["graph"]["deleted"] == 1 + len(leaving), counts
    left = graph_writer.run("MATCH (i:Item) WHERE i.id = $gone OR i.dataset_id = $retired RETURN count(i) AS n",
                            gone=gone, retired=retired)
    assert left[0]["n"] == 0 and not graph_writer.run("MATCH (d:Dataset {id: $id}) RETURN d.id", id=retired)
    search_writer.indices.refresh(index=ALIAS)
    assert not search_writer.exists(index=ALIAS, id=gone)
    assert search_writer.count(index=ALIAS, body={"query": {"term": {"dataset_id": retired}}})["count"] == 0
    after = {r["id"]: r["h"] for r in graph_writer.run(hashes, ids=[derived, derived2])}
    stale = [i for i in before if after[i] == before[i]]
    assert not stale, f"derived items not rewritten, their links_hash stale: {stale}"
    for item in (derived, derived2):  # links to what stayed are kept
        assert _links(graph_writer, item) == [r[1] for r in owner_pg.rows(DERIVED_SQL_FOR_IDS, ([item],))], item
    results = run_checks("opschecks/consistency")
    failed = {k: r.message[:400] for k, r in results.items() if r.outcome != "passed"}
    assert results and not failed, failed


@pytest.mark.proves(CON + "test_search_matches_canonical")
def test_partitioned_checks_each_name_the_differences_of_their_buckets(owner_pg: Any, search_writer: Any) -> None:
    """Documents deleted from the index: each of two partitioned check runs names those in its buckets, and
    only those; together they name all."""
    from kfm_ops import buckets

    index = next(iter(search_writer.indices.get_alias(name=ALIAS)))
    ids = [r[0] for r in owner_pg.rows(f"SELECT id FROM {PUBLISHED_ITEMS} ORDER BY id LIMIT 6 OFFSET 200")]
    parts = [Partition(0, 2), Partition(1, 2)]
    mine = {p.label: [i for i in ids if p.holds(buckets.fields(i, "")[0])] for p in parts}
    assert all(mine.values()), mine  # both partitions hold some of them

    nodeid = CON + "test_search_matches_canonical"
    with documents_deleted(search_writer, index, ids):
        for part in parts:
            result = run_checks(nodeid, "--kfm-partition", part.label)[nodeid]
            message = assert_failed(nodeid, result, f"{len(mine[part.label])} missing", f"partition {part.label}",
                                    *mine[part.label])
            others = [i for i in ids if i not in mine[part.label]]
            assert not [i for i in others if i in message], f"{part.label} named another partition's ids"



def test_a_partitioned_graph_reindex_rewrites_each_share_and_links_across_partitions(owner_pg: Any,
                                                                                    graph_writer: Any) -> None:
    """A graph missing an item of each partition (one of them the source of an item in the other partition), and
    carrying an orphan: `reindex --targets graph --partitions 2 --prune` with two workers writes each partition's
    items, deletes the orphan in the partition that holds it, and links the derived items once every item exists
    — the link into the other partition included. Every graph check passes afterwards."""
    links = owner_pg.rows(f"SELECT l.subject, l.object FROM kfm.prov_links l JOIN {PUBLISHED_ITEMS} s ON "
                          f"s.id = l.subject JOIN {PUBLISHED_ITEMS} o ON o.id = l.object "
                          "WHERE l.relation = 'wasDerivedFrom' ORDER BY 1, 2")
    derived, source = next(r for r in links if _part(r[0]) != _part(r[1]))
    other = next(r[0] for r in links if _part(r[0]) == _part(derived) and r[0] != derived)
    lost = [source, other]  # one item in each partition: both gone, with their relationships
    assert {_part(i) for i in lost} == {0, 1}
    graph_writer.run("UNWIND $ids AS id MATCH (i:Item {id: id}) DETACH DELETE i", ids=lost)
    graph_writer.run("CREATE (:Item {id: 'kfm-proof-orphan', content_hash: 'x'})")  # no bucket: partition 0's
    assert source not in _links(graph_writer, derived)
    coordinator = _start("reindex", "--targets", "graph", "--partitions", "2", "--prune", "--partition-wait", "300")
    run_id = _coordinated(owner_pg, "sync-graph", coordinator)
    workers = [_start("reindex", "--targets", "graph", "--partition", f"{i}/2", "--prune") for i in range(2)]
    done = [_result(w) for w in workers]
    result = _result(coordinator)
    assert [w["exit"] for w in done] == [0, 0] and result["exit"] == 0, (done, result)
    parts = _parts(owner_pg, run_id)
    assert [p["outcome"] for p in parts] == ["succeeded", "succeeded"], parts
    published = owner_pg.scalar(f"SELECT count(*) FROM {PUBLISHED_ITEMS}")
    assert sum(p["counts"]["items_seen"] for p in parts) == result["counts"]["items_seen"] == published
    assert [p["counts"]["orphans_deleted"] for p in parts] == [1, 0], parts
    assert result["counts"]["items_changed"] >= 2 and result["counts"]["orphans_left"] == 0, result["counts"]
    assert source in _links(graph_writer, derived)  # linked by the coordinator once both partitions were written
    results = run_checks(CON + "test_graph_matches_canonical",
                         "opschecks/consistency/test_content.py::test_graph_items_match_their_derivation")
    failed = {k: r.message[:400] for k, r in results.items() if r.outcome != "passed"}
    assert len(results) == 2 and not failed, failed
