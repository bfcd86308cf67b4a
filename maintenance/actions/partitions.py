"""The workers of partitioned runs: ``kfm-maint reindex --targets search|graph --partition i/N`` and
``kfm-maint sync --targets … --partition i/N`` (the coordinators are ``reindex``/``sync --partitions N``).

Each worker is a run of its own (a lock on its partition, its ledger row) that takes its partition of
the waiting coordinator (:mod:`maintenance.partitioned`), joins the coordinator's snapshot and does the
buckets of its partition only; the coordinator verifies the whole and records what the run changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kfm_ops import converge
from kfm_ops.consistency import GraphSide
from kfm_ops.derive import graph_items, search_documents
from kfm_ops.errors import ActionFailed, KfmError
from kfm_ops.hub import ServiceHub
from kfm_ops.partition import Partition
from kfm_ops.pipeline import Counted, chunks, run_bounded
from kfm_ops.stores.search.bulk import BULK_DOCS, BULK_IN_FLIGHT, BulkLoader
from maintenance.action import Plan, RunContext
from maintenance.partitioned import Claim, claim, coordinator_alive, finish

PARTITION_WAIT = 3600.0  # seconds a worker waits for its coordinator, a coordinator for its workers


@dataclass
class PartitionPlan:
    partition: str
    first_bucket: int
    last_bucket: int


def _plan(action: str, partition: Partition, what: str, steps: list[str], where: list[str]) -> Plan[PartitionPlan]:
    return Plan(what=f"{what}: partition {partition.label}, buckets {partition.first}–{partition.end - 1}",
                where=where, how_much={"partition": partition.label, "buckets": partition.end - partition.first},
                rollback=f"nothing is swapped or recorded as synced until the {action} coordinator has every "
                "partition; a failed partition is run again alone",
                steps=[f"wait for the {action} run coordinating {partition.count} partitions, take partition "
                       f"{partition.label}", "join its snapshot (SET TRANSACTION SNAPSHOT)", *steps,
                       "record the partition's outcome and counts in kfm_ops.run_partitions"],
                details=PartitionPlan(partition.label, partition.first, partition.end - 1))


def _watched(hub: ServiceHub, claimed: Claim, action: str, run: RunContext) -> Callable[[], None]:
    """The worker's checkpoint: its own lock, and its coordinator still running (else its work goes nowhere: the
    coordinator discarded what it was building)."""
    control = hub.postgis(write=True)

    def checkpoint() -> None:
        run.checkpoint()
        if not coordinator_alive(control, claimed.run_id):
            raise ActionFailed(action, "partition", f"the coordinating run {claimed.run_id} is no longer running",
                               hint="start a new coordinator and its workers (kfm_ops.audit_ledger says how the "
                               "coordinator ended)")
    return checkpoint


def _worked(hub: ServiceHub, claimed: Claim, partition: Partition, work: Any) -> dict[str, Any]:
    """Run ``work()`` and record the partition's outcome, whatever happens."""
    control = hub.postgis(write=True)
    try:
        counts: dict[str, Any] = work()
    except BaseException as exc:  # every way a partition ends is recorded, then re-raised
        reason = exc.message if isinstance(exc, KfmError) else f"{type(exc).__name__}: {exc}"
        finish(control, claimed, partition, "failed", {}, reason)
        raise
    counts = {"partition": partition.label, "coordinator": claimed.run_id, "attempt": claimed.attempt, **counts}
    finish(control, claimed, partition, "succeeded", counts)
    return counts


class ReindexSearchPartition:
    """Partition ``i/N`` of a partitioned search rebuild: its published items into the coordinator's new index."""

    name = "reindex-search-partition"
    derived = ("search",)
    verify_markers = ""  # the coordinator verifies the whole index before its swap
    bootstraps_schema = False

    def __init__(self, *, partition: Partition, wait: float = PARTITION_WAIT, batch_size: int = BULK_DOCS,
                 threads: int = BULK_IN_FLIGHT) -> None:
        self.partition = partition
        self.wait = wait
        self.batch_size = batch_size
        self.threads = threads
        self.stores = (f"search#{partition.label}",)  # one worker per partition at a time

    def plan(self, hub: ServiceHub) -> Plan[PartitionPlan]:
        return _plan("reindex-search", self.partition, "load the waiting search rebuild's new index",
                     ["stream + bulk-load the partition's published items", "digest their (id, content hash)"],
                     [f"search {hub.search().address}: the coordinator's new index"])

    def apply(self, hub: ServiceHub, plan: Plan[PartitionPlan], run: RunContext) -> dict[str, Any]:
        part = self.partition
        claimed = claim(hub.postgis(write=True), "reindex-search", part, run.run_id, wait=self.wait,
                        checkpoint=run.checkpoint)
        if claimed is None:
            return {"partition": part.label, "unchanged": True}

        def work() -> dict[str, Any]:
            reader, search = hub.canonical(), hub.search(write=True)
            index, grid = claimed.target["index"], float(claimed.target["grid"])
            loader = BulkLoader(search.client, index, action=self.name, batch_size=self.batch_size,
                                in_flight=self.threads)

            checkpoint = _watched(hub, claimed, self.name, run)

            def batch_done(done: int) -> None:
                run.progress("search documents", done, None)
                checkpoint()

            with reader.joined(claimed.snapshot):
                loaded = loader.load(search_documents(reader, grid, partition=part), on_done=batch_done)
                digest = reader.published_digest(partition=part)
            if digest.count != loaded:
                raise ActionFailed(self.name, "bulk", f"loaded {loaded} documents of partition {part.label} but "
                                   f"the snapshot holds {digest.count}", hint="re-run this partition")
            return {"index": index, "documents_loaded": loaded, "digest": [digest.count, digest.a, digest.b]}

        return _worked(hub, claimed, part, work)


class SyncPartition:
    """Partition ``i/N`` of a partitioned sync: the search and graph records of its buckets converged."""

    name = "sync-partition"
    bootstraps_schema = False
    verify_markers = ""  # the coordinator proves the whole stores equal the snapshot

    def __init__(self, *, targets: list[str], partition: Partition, wait: float = PARTITION_WAIT,
                 batch_size: int = 2000) -> None:
        self.targets = targets
        self.partition = partition
        self.wait = wait
        self.batch = batch_size
        self.derived = tuple(targets)
        self.stores = tuple(f"{t}#{partition.label}" for t in targets)

    def plan(self, hub: ServiceHub) -> Plan[PartitionPlan]:
        return _plan("sync", self.partition, f"converge {', '.join(self.targets)} with the waiting sync",
                     [f"{t}: derive again what differs in the partition's buckets, delete orphans, prove them"
                      for t in self.targets], [f"{t}: the partition's buckets" for t in self.targets])

    def apply(self, hub: ServiceHub, plan: Plan[PartitionPlan], run: RunContext) -> dict[str, Any]:
        part = self.partition
        claimed = claim(hub.postgis(write=True), "sync", part, run.run_id, wait=self.wait, checkpoint=run.checkpoint)
        if claimed is None:
            return {"partition": part.label, "unchanged": True}

        def work() -> dict[str, Any]:
            target = claimed.target
            if sorted(target["targets"]) != sorted(self.targets):
                raise ActionFailed(self.name, "partition", f"the coordinator syncs {','.join(target['targets'])}, "
                                   f"this worker was given {','.join(self.targets)}",
                                   hint="give every worker the coordinator's --targets (the cache is the "
                                   "coordinator's own)")
            reader, grid = hub.canonical(), float(target["grid"])
            checkpoint = _watched(hub, claimed, self.name, run)
            counts: dict[str, Any] = {}
            with reader.joined(claimed.snapshot):
                snapshot = converge.Snapshot(reader, part)  # the partition's digests: once for both stores
                if "search" in self.targets:
                    search = hub.search(write=True)
                    loader = BulkLoader(search.client, target["live_index"], action=self.name)
                    counts["search"] = converge.search(reader, search, target["live_index"], grid, loader,
                                                       action=self.name, checkpoint=checkpoint,
                                                       snapshot=snapshot).as_dict()
                if "graph" in self.targets:
                    since = datetime.fromisoformat(target["graph_since"]) if target.get("graph_since") else None
                    counts["graph"] = converge.graph(reader, hub.graph(write=True), grid, batch=self.batch,
                                                     action=self.name, checkpoint=checkpoint, since=since,
                                                     snapshot=snapshot).as_dict()
            return counts

        return _worked(hub, claimed, part, work)


class ReindexGraphPartition:
    """Partition ``i/N`` of a partitioned graph reindex: its items (and, with ``prune``, its orphaned Items) written
    from the coordinator's snapshot. The derived-from links are the coordinator's, once every item exists (a link
    may point into another partition)."""

    name = "reindex-graph-partition"
    derived = ("graph",)
    verify_markers = ""  # the coordinator compares the whole graph
    bootstraps_schema = False

    def __init__(self, *, partition: Partition, prune: bool = False, wait: float = PARTITION_WAIT,
                 batch_size: int = 2000) -> None:
        self.partition = partition
        self.prune = prune
        self.wait = wait
        self.batch = batch_size
        self.stores = (f"graph#{partition.label}",)

    def plan(self, hub: ServiceHub) -> Plan[PartitionPlan]:
        return _plan("sync-graph", self.partition, "upsert the waiting graph reindex's items",
                     ["upsert the partition's items and their relationships in batches",
                      *(["delete the partition's orphaned items"] if self.prune else [])],
                     [f"graph {hub.graph().address}: the Items of the partition's buckets"])

    def apply(self, hub: ServiceHub, plan: Plan[PartitionPlan], run: RunContext) -> dict[str, Any]:
        part = self.partition
        claimed = claim(hub.postgis(write=True), "sync-graph", part, run.run_id, wait=self.wait,
                        checkpoint=run.checkpoint)
        if claimed is None:
            return {"partition": part.label, "unchanged": True}

        def work() -> dict[str, Any]:
            if bool(claimed.target.get("prune")) != self.prune:
                theirs = "prunes" if claimed.target.get("prune") else "does not prune"
                raise ActionFailed(self.name, "partition", f"the coordinator {theirs}, this worker was "
                                   f"{'' if self.prune else 'not '}given --prune",
                                   hint="give every worker the coordinator's --prune")
            reader, graph, grid = hub.canonical(), hub.graph(write=True), float(claimed.target["grid"])
            checkpoint = _watched(hub, claimed, self.name, run)

            def tick(seen: int) -> None:
                run.progress("graph items", seen, None)
                checkpoint()

            with reader.joined(claimed.snapshot):
                items = Counted(chunks(graph_items(reader, grid, partition=part), self.batch), tick)
                changed = run_bounded(items, graph.upsert_items, in_flight=2, name="kfm-graph")
                deleted = 0
                if self.prune:
                    orphans = converge.Scope(converge.Snapshot(reader, part)).differences(
                        GraphSide(graph), "graph label Item")[1]
                    for batch in chunks(orphans, self.batch):
                        graph.delete_items(batch)
                        deleted += len(batch)
            return {"items_seen": items.seen, "items_changed": changed, "orphans_deleted": deleted}

        return _worked(hub, claimed, part, work)
