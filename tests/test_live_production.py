"""Live production: maintenance converges while a pipeline writes, and checks know what "pending" means.

A stand-in pipeline (tests/pipeline.py) writes to the canonical store through the owner role —
updates, inserts, deletions, one dataset retired — while kfm-ops rebuilds, syncs and checks.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from kfm_ops import contracts
from tests.helpers import run_checks
from tests.plugins.live import CONSISTENCY, RETIRED, failures, kill_sync_midway, maint_ok

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

def test_reindex_completes_under_a_pipeline_and_sync_converges(pipeline: Any, owner_pg: Any) -> None:
    writes = pipeline(rate=40, seconds=600)
    time.sleep(1)
    rebuilt = maint_ok("reindex", "--targets", "search", "--force")
    graph = maint_ok("reindex", "--targets", "graph", "--prune")
    cache = maint_ok("cache", "rebuild")
    written = writes.stop()
    assert written.total > 50 and written.retired == [RETIRED], written
    assert rebuilt["counts"]["rounds"], rebuilt  # the changes made while it was built were converged
    assert graph["counts"]["items_seen"] > 0 and cache["counts"]["stats_refreshed"] == 1
    before = datetime.now().astimezone()
    synced = maint_ok("sync", "--targets", "search,graph,cache")
    after = datetime.now().astimezone()
    assert synced["counts"]["search"]["upserted"] + synced["counts"]["search"]["deleted"] > 0, synced
    results = run_checks(CONSISTENCY, "opschecks/governance")
    assert not failures(results), failures(results)
    for store in ("search", "graph"):  # the watermark is the instant of the snapshot the sync read
        watermark = owner_pg.scalar("SELECT watermark FROM kfm_ops.sync_watermarks WHERE store = %s", (store,))
        assert before <= watermark <= after, (store, before, watermark, after)


def test_sync_writes_only_what_changed(pipeline: Any, search_writer: Any) -> None:
    maint_ok("sync", "--targets", "search,graph,cache")
    run = pipeline(rate=100, seconds=2, retire=RETIRED)
    run.join(30)
    written = run.written
    retired_items = search_writer.count(index="kfm-items", body={"query": {"term": {"dataset_id": RETIRED}}})["count"]
    counts = maint_ok("sync", "--targets", "search,graph,cache")["counts"]
    changed = written.updates + written.inserts + written.deletes
    for store in ("search", "graph"):
        work = counts[store]["upserted"] + counts[store]["deleted"]
        # each write is one record (an update may hit the same record twice); the retired dataset's items go
        assert work <= changed + retired_items, (store, counts[store], written, retired_items)
        assert counts[store]["compared"] > 1000
    assert counts["search"]["deleted"] >= retired_items > 0
    again = maint_ok("sync", "--targets", "search,graph")["counts"]
    assert again["search"]["upserted"] == again["search"]["deleted"] == 0  # idempotent
    results = run_checks(CONSISTENCY, "opschecks/governance/test_sensitivity.py")
    assert not failures(results), failures(results)


def test_checks_during_load_fail_only_on_what_is_overdue(pipeline: Any, search_writer: Any, owner_pg: Any) -> None:
    maint_ok("sync", "--targets", "search,graph,cache")
    old = owner_pg.scalar("SELECT id FROM kfm_ops.published_items WHERE updated_at < now() - interval '1 day' "
                          "ORDER BY id DESC LIMIT 1")
    index = next(iter(search_writer.indices.get_alias(name="kfm-items")))
    document = search_writer.get(index=index, id=old)["_source"]
    pipeline(rate=20, seconds=600)
    time.sleep(3)
    clean = run_checks(CONSISTENCY, "opschecks/governance")
    assert not failures(clean), failures(clean)  # changes younger than the SLA are pending, not failures
    search_writer.delete(index=index, id=old, refresh=True)  # a drift older than the SLA
    try:
        drift = run_checks(f"{CONSISTENCY}/test_cross_store.py::test_search_matches_canonical")
        (message,) = [r.message for r in drift.values() if r.outcome == "failed"]
        assert "1 missing" in message and old in message and "pending" in message, message
    finally:
        search_writer.index(index=index, id=old, body=document, refresh=True)


def test_a_killed_sync_leaves_the_stores_readable_and_the_next_run_converges(pipeline: Any, owner_pg: Any,
                                                                           search_writer: Any) -> None:
    run = pipeline(rate=200, seconds=3)
    run.join(30)
    kill_sync_midway(owner_pg)
    alias = contracts.load("search")["alias"]
    assert search_writer.search(index=alias, body={"size": 1})["hits"]["hits"]  # the live index still answers
    maint_ok("sync", "--targets", "search,graph,cache")
    assert owner_pg.scalar("SELECT count(*) FROM kfm_ops.audit_ledger WHERE action = 'sync' AND outcome = 'aborted'")
    results = run_checks(CONSISTENCY)
    assert not failures(results), failures(results)
