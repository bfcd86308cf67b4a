"""``kfm-maint sync --targets search,graph,cache``: bring the live derived stores up to date with what changed.

Cost follows the changes, not the catalog. With a change slot per store (``KFM_POSTGIS__CHANGE_SLOT``,
:mod:`kfm_ops.changes`) the WAL names what changed since the store's last sync; else the bucket
digests of both sides (each engine sums its own, :mod:`kfm_ops.buckets`) name the records that
differ from one canonical snapshot — a scan of the catalog per run, and the path a slot that is
new, lost or told a TRUNCATE takes once. Only those records are derived again and written,
orphans (deleted items, items of unpublished or retired datasets) are deleted, and a second
comparison proves the store equals the snapshot (for what it wrote).
The graph also re-links items changed since its last sync (a changed link moves the item's
``updated_at``). The cache's stats view is refreshed CONCURRENTLY (readers keep the old rows), on a
connection of its own while the search and graph syncs run, then its summaries rewritten where they
changed. Each store's watermark becomes the snapshot's instant.
``reindex`` stays the full blue/green rebuild (mapping changes, corruption, disaster recovery).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kfm_ops import buckets, changes, contracts, converge, derive, log
from kfm_ops.changes import ChangeSlot, SlotState
from kfm_ops.consistency import GraphSide, SearchSide, bucket_compare
from kfm_ops.errors import ActionFailed
from kfm_ops.hub import ServiceHub
from kfm_ops.interrupt import stoppable
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.search.bulk import BULK_DOCS, BULK_IN_FLIGHT, BulkLoader
from kfm_ops.stores.search.indices import search_state
from maintenance.action import Plan, RunContext
from maintenance.actions.cache import CacheRebuild
from maintenance.actions.partitions import PARTITION_WAIT
from maintenance.partitioned import Coordinator

# Changes whose transaction began before the last sync's snapshot but committed after it carry an
# updated_at just before the watermark: the graph's re-linking looks back this far.
TRANSACTION_MARGIN = timedelta(minutes=5)


def change_slot(hub: ServiceHub, store: str, *, write: bool) -> ChangeSlot | None:
    """``store``'s change slot when KFM_POSTGIS__CHANGE_SLOT names a prefix (through the write role, or the read
    role for what a plan reads)."""
    prefix = hub.settings.postgis.change_slot if hub.settings.postgis else None
    return ChangeSlot(hub.postgis(write=write), changes.slot_name(prefix, store)) if prefix else None


@dataclass
class SyncPlan:
    differing_buckets: dict[str, int]  # the stores found by their digests
    live_index: str | None
    slots: dict[str, SlotState]  # the stores found by their change slots (trusted or not)


class Sync:
    name = "sync"
    bootstraps_schema = False

    def __init__(self, *, targets: list[str], batch_size: int = 2000, partitions: int = 1,
                 partition_wait: float = PARTITION_WAIT) -> None:
        self.targets = targets
        self.stores = tuple(targets)
        self.derived = tuple(targets)
        self.batch = batch_size
        self.verify_markers = " or ".join(targets)
        self.partitions = partitions
        self.partition_wait = partition_wait

    def _slots(self, hub: ServiceHub, *, write: bool) -> dict[str, ChangeSlot]:
        """The change slots of the targets (read through the read role for a plan: a dry run has no other)."""
        if self.partitions > 1:  # partitions split the catalog-sized work: the digests' path
            return {}
        return {t: slot for t in ("search", "graph") if t in self.targets
                and (slot := change_slot(hub, t, write=write)) is not None}

    def plan(self, hub: ServiceHub) -> Plan[SyncPlan]:
        slots = {t: slot.state() for t, slot in self._slots(hub, write=False).items()}
        by_digests = [t for t in ("search", "graph") if t in self.targets and not (t in slots and slots[t].trusted)]
        canonical = hub.canonical().bucket_digests() if by_digests else None
        differing: dict[str, int] = {}
        live = None
        if "search" in self.targets:
            state = search_state(hub.search().client, contracts.load("search", hub.settings.contracts_dir))
            if len(state.live) != 1:
                raise ActionFailed(self.name, "plan", f"alias {state.alias} points at {len(state.live)} indices",
                                   hint="sync needs one live index: kfm-maint reindex --targets search")
            live = state.live[0]
        for t in by_digests:
            side = SearchSide(hub.search(), live) if t == "search" and live else GraphSide(hub.graph())
            assert canonical is not None
            differing[t] = len(buckets.differing(canonical, side.digests()))
        per_store = ", ".join(f"{n} in {t}" for t, n in differing.items())
        found = [f"{t}: what its change slot {s.name} holds ({(s.behind_bytes or 0) / 2**20:.1f} MiB of WAL)"
                 for t, s in slots.items() if s.trusted]
        return Plan(
            what=f"sync {', '.join(self.targets)} with the canonical store"
                 + (f": of {buckets.BUCKETS} buckets, {per_store} differ" if differing else "")
                 + (f"; {'; '.join(found)}" if found else "")
                 + (" (and the cache)" if "cache" in self.targets else ""),
            where=[f"{t}: {'live index ' + live if t == 'search' and live else t}" for t in self.targets],
            how_much={**({"published": buckets.total(canonical)} if canonical is not None else {}),
                      **{f"{t}_buckets": n for t, n in differing.items()},
                      **{f"{t}_slot_behind_bytes": s.behind_bytes or 0 for t, s in slots.items() if s.trusted}},
            rollback="the stores are derived: a re-run converges them again; kfm-maint reindex rebuilds",
            steps=[*[f"{t}: {s.why_not()}: create it, then find this run's differences by the digests (its baseline)"
                     for t, s in slots.items() if not s.trusted],
                   "open one REPEATABLE READ snapshot of the canonical store",
                   *[f"{t}: read the changes its slot holds up to now; derive again those the snapshot shows, delete "
                     "those it no longer has, prove them; advance the slot past them" for t in slots
                     if slots[t].trusted],
                   *([f"{t}: derive again what differs from it, delete orphans, prove equality" for t in differing]
                     if self.partitions == 1 else
                     [f"export it; wait (at most {self.partition_wait:g}s) for its {self.partitions} partitions: "
                      f"kfm-maint sync --targets {','.join(differing)} --partition i/{self.partitions}, "
                      f"i = 0..{self.partitions - 1}", f"prove {', '.join(differing)} equal the snapshot"]),
                   *(["cache: refresh the stats view, rewrite changed summaries"] if "cache" in self.targets else []),
                   "record each store's watermark (the snapshot's instant)"],
            details=SyncPlan(differing, live, slots),
        )

    def apply(self, hub: ServiceHub, plan: Plan[SyncPlan], run: RunContext) -> dict[str, Any]:
        cache = CacheRebuild(targets=["stats", "summaries"]) if "cache" in self.targets else None
        # The stats view's refresh is a whole-catalog aggregate on the PostgreSQL primary, while the search
        # and graph syncs mostly wait on their stores: it runs beside them on an owner connection of its own.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfm-cache") as pool:
            refreshing = (pool.submit(cache.refresh, hub.fresh_postgis_writer(), cache.plan(hub).details)
                          if cache else None)
            counts = self._search_and_graph(hub, plan, run)
            if cache and refreshing:
                counts["cache"] = cache.complete(hub, run, refreshing.result())
        return counts

    def _search_and_graph(self, hub: ServiceHub, plan: Plan[SyncPlan], run: RunContext) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        reader = hub.canonical()  # the replica when configured: its snapshot's instant never outruns its replay
        control = hub.postgis(write=True)
        watermarks: dict[str, Any] = {}
        slots = self._slots(hub, write=True)
        trusted = {t for t, slot in slots.items() if slot.state().trusted}  # again: the plan may be old
        for t in slots.keys() - trusted:  # before the snapshot: the digests then make its baseline
            slots[t].create(t)
        if {"search", "graph"} & set(self.targets):
            grid = derive.grid_degrees(hub.policy(), hub.settings.contracts_dir)
            graph_since = control.scalar("SELECT watermark FROM kfm_ops.sync_watermarks WHERE store = 'graph'")
            since = graph_since - TRANSACTION_MARGIN if graph_since else None
            with reader.snapshot() as instant:
                snapshot = converge.Snapshot(reader)  # its digests: computed once for both stores
                found = self._changes(reader, control, {t: slots[t] for t in trusted})
                if self.partitions > 1:
                    counts.update(self._coordinate(hub, snapshot, grid, since, plan.details.live_index, run))
                    watermarks.update({t: instant for t in ("search", "graph") if t in self.targets})
                else:
                    synced = self._converge(hub, snapshot, found, slots, grid, since, plan.details.live_index, run)
                    counts.update(synced)
                    watermarks.update({t: instant for t in synced})
        for store, instant in watermarks.items():
            control.record_watermark(store, instant, run.run_id)
        return counts

    def _converge(self, hub: ServiceHub, snapshot: converge.Snapshot, found: dict[str, changes.Changes],
                  slots: dict[str, ChangeSlot], grid: float, since: datetime | None, live_index: str | None,
                  run: RunContext) -> dict[str, Any]:
        """Inside the open snapshot: search and graph converged to it at once — the graph in a thread, through a
        second session joined to the snapshot (each sync mostly waits on its own store) — and each store's slot
        moved on once that store is proven."""
        counts: dict[str, Any] = {}
        reader = snapshot.reader
        with contextlib.ExitStack() as stack:
            graph_job = None
            if "graph" in self.targets:
                twin = snapshot
                if "search" in self.targets and live_index:
                    second = hub.fresh_canonical()
                    stack.enter_context(second.joined(reader.export_snapshot()))
                    twin = snapshot.through(second)
                pool = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfm-graph-sync"))
                graph_job = pool.submit(self._graph, hub.graph(write=True), twin, found.get("graph"), grid, since,
                                        stoppable(run.checkpoint))
            if "search" in self.targets and live_index:
                search = hub.search(write=True)
                loader = BulkLoader(search.client, live_index, action=self.name,
                                    batch_size=BULK_DOCS, in_flight=BULK_IN_FLIGHT)
                side = SearchSide(search, live_index)
                ids = found["search"].follow(reader, side.datasets_present) if "search" in found else None
                counts["search"] = converge.search(reader, search, live_index, grid, loader,
                                                   action=self.name, checkpoint=run.checkpoint,
                                                   snapshot=snapshot, ids=ids).as_dict()
                self._consumed(slots, found, "search", ids, counts, run)
            if graph_job is not None:
                counts["graph"], ids = graph_job.result()
                self._consumed(slots, found, "graph", ids, counts, run)
        return counts

    def _graph(self, graph: GraphStore, snapshot: converge.Snapshot, told: changes.Changes | None, grid: float,
               since: datetime | None, checkpoint: Callable[[], None]) -> tuple[dict[str, Any], list[str] | None]:
        """The graph converged to ``snapshot`` (through its own session); with the ids a change slot named."""
        reader = snapshot.reader
        ids = told.follow(reader, GraphSide(graph).datasets_present) if told else None
        result = converge.graph(reader, graph, grid, batch=self.batch, action=self.name, checkpoint=checkpoint,
                                since=since, snapshot=snapshot, ids=ids,
                                relink=sorted(told.items) if told else None,
                                references=told.references if told and ids is not None else True)
        return result.as_dict(), ids

    @staticmethod
    def _changes(reader: Any, control: Any, slots: dict[str, ChangeSlot]) -> dict[str, changes.Changes]:
        """Inside the open snapshot: what each trusted slot holds up to the WAL position read now (after the
        snapshot opened: every transaction it sees committed before that position)."""
        found = {t: changes.told(reader, control, slot) for t, slot in slots.items()}
        for t, told in found.items():
            log.get_logger().info("sync.changes", store=t, slot=slots[t].name, changes=told.summary())
        return found

    @staticmethod
    def _consumed(slots: dict[str, ChangeSlot], found: dict[str, changes.Changes], store: str,
                  ids: list[str] | None, counts: dict[str, Any], run: RunContext) -> None:
        """The store is proven equal to the snapshot where it was written: its slot may move on (past what the
        snapshot saw), or — just created — has its baseline."""
        slot = slots.get(store)
        if slot is None:
            return
        if store in found:
            slot.advance(found[store].advance_to)
            counts[store]["found_by"] = "change slot" if ids is not None else "digests (too many changes for ids)"
            counts[store]["slot"] = found[store].summary()
        else:
            slot.baselined(run.run_id)
            counts[store]["found_by"] = "digests (the change slot's baseline)"

    def _coordinate(self, hub: ServiceHub, snapshot: converge.Snapshot, grid: float, since: datetime | None,
                    live_index: str | None, run: RunContext) -> dict[str, Any]:
        """Inside the open snapshot: the graph's shared nodes once, the partitions handed out and waited for,
        then the whole of each store proven equal to the snapshot (what the partitions did, summed)."""
        reader = snapshot.reader
        targets = [t for t in ("search", "graph") if t in self.targets]
        graph = hub.graph(write=True) if "graph" in targets else None
        if graph is not None:  # datasets, activities, places: the nodes every partition's items point at
            converge.merge_nodes(reader, graph, prune=True)
        coordinator = Coordinator(hub.postgis(write=True), self.name, run.run_id, self.partitions)
        coordinator.open(reader.export_snapshot(), {"targets": targets, "live_index": live_index, "grid": grid,
                                                    "graph_since": since.isoformat() if since else None})
        rows = coordinator.wait(self.partition_wait, checkpoint=run.checkpoint, keepalive=reader.ping,
                                progress=lambda done: run.progress("partitions", done, self.partitions))
        sides: dict[str, SearchSide | GraphSide] = {}
        if "search" in targets and live_index:
            sides["search"] = SearchSide(hub.search(write=True), live_index)
        if graph is not None:
            sides["graph"] = GraphSide(graph)
        counts: dict[str, Any] = {"partitions": self.partitions}
        for store, side in sides.items():
            diff = bucket_compare(reader, side, store=store, canonical=snapshot.digests)
            if not diff.clean:
                raise ActionFailed(self.name, "verify", diff.summary(),
                                   hint="the store still differs from the snapshot its partitions synced it to; "
                                   "re-run")
            done = [r["counts"].get(store, {}) for r in rows]
            counts[store] = {"compared": diff.compared, "upserted": sum(d.get("upserted", 0) for d in done),
                             "deleted": sum(d.get("deleted", 0) for d in done)}
        return counts
