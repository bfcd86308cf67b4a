"""`kfm-maint sync` told what changed by its change slots (KFM_POSTGIS__CHANGE_SLOT, kfm_ops/changes.py).

On the real local stack (wal_level=logical): the first sync creates a slot per store and makes its
baseline by the digests; after a pipeline's updates, inserts, deletions and a retired dataset the
next sync follows only the slot, and every consistency check agrees with it; a killed sync leaves
the slot where it was, and the next run converges.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import kfm_maint, run_checks
from tests.plugins.live import CONSISTENCY, RETIRED, failures, kill_sync_midway, maint_ok

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

PREFIX = "kfm_test_changes"
SLOTS = {"KFM_POSTGIS__CHANGE_SLOT": PREFIX}
STORES = ("search", "graph")


@pytest.fixture
def slots(owner_pg: Any) -> Iterator[dict[str, str]]:
    """The change slots of this test: dropped (and their markers) afterwards, whatever happened."""
    yield SLOTS
    for store in STORES:
        owner_pg.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                         (f"{PREFIX}_{store}",))
    owner_pg.execute("DELETE FROM kfm_ops.change_slots WHERE slot LIKE %s", (PREFIX + "%",))


def _canonical_rows_held(owner_pg: Any, store: str) -> int:
    """Changed rows of the canonical schema the store's slot still holds (the harness's own writes aside)."""
    return int(owner_pg.scalar("SELECT count(*) FROM pg_logical_slot_peek_changes(%s, NULL, NULL) "
                               "WHERE data LIKE 'table kfm.%%'", (f"{PREFIX}_{store}",)))


def test_sync_follows_its_change_slots(pipeline: Any, slots: dict[str, str], owner_pg: Any,
                                       search_writer: Any) -> None:
    first = maint_ok("sync", "--targets", "search,graph,cache", env=slots)
    for store in STORES:
        assert first["counts"][store]["found_by"] == "digests (the change slot's baseline)", first["counts"]
    assert owner_pg.scalar("SELECT count(*) FROM kfm_ops.change_slots WHERE slot LIKE %s "
                           "AND baselined_at IS NOT NULL", (PREFIX + "%",)) == 2
    run = pipeline(rate=100, seconds=2, retire=RETIRED)
    run.join(30)
    written = run.written
    assert written.updates and written.inserts and written.deletes and written.retired == [RETIRED], written
    retired = search_writer.count(index="kfm-items", body={"query": {"term": {"dataset_id": RETIRED}}})["count"]
    for store in STORES:
        assert _canonical_rows_held(owner_pg, store) >= written.total
    published = owner_pg.scalar("SELECT count(*) FROM kfm_ops.published_items")
    planned = kfm_maint("sync", "--targets", "search,graph", "--dry-run", env=slots)  # read-only: the plan only
    assert planned.returncode == 0 and f"what its change slot {PREFIX}_search holds" in planned.stdout, planned
    assert _canonical_rows_held(owner_pg, "search") >= written.total  # a dry run consumes nothing
    counts = maint_ok("sync", "--targets", "search,graph,cache", env=slots)["counts"]
    for store in STORES:
        c = counts[store]
        assert c["found_by"] == "change slot", c
        # only what the slot named was compared: the changed items and the retired dataset's, not the catalog
        assert c["compared"] <= written.updates + written.inserts + retired < published, (c, written, published)
        assert c["upserted"] + c["deleted"] > 0, c
        assert _canonical_rows_held(owner_pg, store) == 0, store  # advanced past everything it applied
    assert counts["search"]["deleted"] >= retired + written.deletes - written.inserts > 0, (counts, written)
    results = run_checks(CONSISTENCY, "opschecks/health/test_postgis.py::test_postgis_change_slots", env=slots)
    assert not failures(results), failures(results)
    again = maint_ok("sync", "--targets", "search,graph", env=slots)["counts"]
    for store in STORES:  # idempotent, and nothing left to read
        assert again[store]["found_by"] == "change slot" and again[store]["upserted"] == again[store]["deleted"] == 0


def test_a_killed_slot_sync_keeps_its_changes(pipeline: Any, slots: dict[str, str], owner_pg: Any) -> None:
    maint_ok("sync", "--targets", "search,graph", env=slots)
    run = pipeline(rate=200, seconds=2)
    run.join(30)
    held = _canonical_rows_held(owner_pg, "search")
    assert held > 0
    kill_sync_midway(owner_pg, env=slots)
    assert _canonical_rows_held(owner_pg, "search") == held  # nothing consumed by a run that did not finish
    counts = maint_ok("sync", "--targets", "search,graph", env=slots)["counts"]
    assert counts["search"]["found_by"] == "change slot", counts
    results = run_checks(CONSISTENCY, env=slots)
    assert not failures(results), failures(results)


def test_a_reindex_converges_its_rounds_by_the_search_slot(pipeline: Any, slots: dict[str, str],
                                                          owner_pg: Any) -> None:
    """With a trusted search slot the reindex's convergence rounds (before and after the swap) follow the ids it
    names instead of the bucket digests; the slot ends past what the live index holds, and one sync by the slots
    after the pipeline stops leaves every consistency check green."""
    maint_ok("sync", "--targets", "search,graph", env=slots)  # the slots and their baseline
    writes = pipeline(rate=40, seconds=600)
    time.sleep(1)
    rebuilt = maint_ok("reindex", "--targets", "search", "--force", env=slots)["counts"]
    written = writes.stop()
    assert rebuilt["rounds_found_by"] == "change slot" and rebuilt["rounds"], rebuilt
    assert written.total > 20 and not written.errors, written
    synced = maint_ok("sync", "--targets", "search,graph,cache", env=slots)["counts"]
    assert synced["search"]["found_by"] == "change slot", synced
    results = run_checks(CONSISTENCY, env=slots)
    assert not failures(results), failures(results)
