"""``kfm-maint reindex --targets graph``: upsert the knowledge graph from the canonical store.

Batched ``UNWIND`` + ``MERGE`` on the constrained keys, two writers while the next
batch is read from PostGIS. An item whose content_hash and links (activity, places,
derived-from items) are unchanged is not touched, so a second run changes nothing.
Item -> Item links (WAS_DERIVED_FROM) are made in a second pass, once every item
exists, so a link to an item of a later batch is never lost. Nodes that are no longer
in the canonical store are only counted (from the label count: every published item
was just merged), unless ``--prune`` (which, in production, sits behind the confirm
gate like every write) finds and deletes them. The graph room
(:mod:`kfm_ops.stores.graph`) holds the Cypher; :mod:`kfm_ops.derive` the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfm_ops import contracts, converge, derive
from kfm_ops.consistency import GraphSide, bucket_compare, graph_matches
from kfm_ops.errors import ActionFailed
from kfm_ops.hub import ServiceHub
from kfm_ops.pipeline import Counted, chunks, run_bounded
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PostgisStore
from maintenance.action import Plan, RunContext
from maintenance.actions.partitions import PARTITION_WAIT
from maintenance.partitioned import Coordinator


@dataclass
class GraphPlan:
    orphan_ids: list[str]


class SyncGraph:
    name = "sync-graph"
    stores = ("graph",)
    derived = ("graph",)
    verify_markers = "graph"
    bootstraps_schema = False

    def __init__(self, *, prune: bool = False, batch_size: int = 2000, partitions: int = 1,
                 partition_wait: float = PARTITION_WAIT) -> None:
        self.prune = prune
        self.batch = batch_size
        self.partitions = partitions
        self.partition_wait = partition_wait

    def plan(self, hub: ServiceHub) -> Plan[GraphPlan]:
        reader, graph = hub.canonical(), hub.graph()  # the full comparison: a replica's work when there is one
        count, newest = reader.published_count()
        diff = graph_matches(reader, graph, store="graph", first_n=hub.settings.checks.first_n)
        return Plan(
            # the plan compares content hashes only: an item whose links alone changed is found by
            # its links_hash during the sync (reading every item's links here would double the cost)
            what=f"upsert {diff.missing + diff.stale} new or changed of {count} published items into the graph "
            "(and any whose links alone changed)"
            + (f", delete {diff.orphaned} orphaned items" if self.prune else ""),
            where=[f"graph {graph.address}: labels Dataset, Item, Place, Activity"],
            how_much={"published": count, "missing": diff.missing, "stale": diff.stale, "orphaned": diff.orphaned,
                      "prune": self.prune},
            rollback="the graph is derived: re-run after restoring the canonical store, or restore a graph backup",
            steps=["create missing contract constraints", "upsert datasets, activities, places",
                   *(["upsert changed items and their relationships in batches",
                      "link derived items (WAS_DERIVED_FROM) once every item exists",
                      "delete orphaned items" if self.prune else "count orphaned items (no --prune)"]
                     if self.partitions == 1 else
                     [f"export one canonical snapshot; wait (at most {self.partition_wait:g}s) for its "
                      f"{self.partitions} partitions: kfm-maint reindex --targets graph --partition i/"
                      f"{self.partitions}{' --prune' if self.prune else ''}, i = 0..{self.partitions - 1} (each: "
                      "its items" + (", its orphans)" if self.prune else ")"),
                      "link derived items (WAS_DERIVED_FROM) once every item exists",
                      "compare the whole graph with the snapshot" + (", prune reference nodes" if self.prune
                                                                      else "")]),
                   "record the sync watermark"],
            details=GraphPlan(diff.orphaned_ids),
            nothing_to_do=diff.clean and newest is not None and self.partitions == 1,  # workers wait for it
        )

    def apply(self, hub: ServiceHub, plan: Plan[GraphPlan], run: RunContext) -> dict[str, Any]:
        graph = hub.graph(write=True)
        reader = hub.canonical()  # the replica when configured: its snapshot's instant never outruns its replay
        grid = derive.grid_degrees(hub.policy(), hub.settings.contracts_dir)
        with reader.snapshot() as instant:  # one view of the canonical store; its instant is the watermark
            counts = (self._sync if self.partitions == 1 else self._coordinate)(hub, graph, reader, grid, run)
        hub.postgis(write=True).record_watermark("graph", instant, run.run_id)
        return counts

    def _sync(self, hub: ServiceHub, graph: GraphStore, reader: PostgisStore, grid: float,
              run: RunContext) -> dict[str, Any]:
        constraints = graph.ensure_schema(contracts.load("graph", hub.settings.contracts_dir))
        total, _newest = reader.published_count()
        # the reference nodes items point at; with --prune, those no longer derived go (after the items below)
        converge.merge_nodes(reader, graph, prune=False)

        def tick(seen: int) -> None:
            run.progress("graph items", seen, total)
            run.checkpoint()

        # Two writers while the next batch is read from PostGIS. Batches of items never touch each
        # other (Item -> Item links wait for the second pass); they share only the Dataset, Activity
        # and Place nodes, and a deadlock there is a transient error the driver retries.
        items = Counted(chunks(derive.graph_items(reader, grid), self.batch), tick)
        changed = run_bounded(items, graph.upsert_items, in_flight=2, name="kfm-graph")
        seen = items.seen
        derived = run_bounded(chunks(reader.stream_dicts(derive.DERIVED_SQL), self.batch), graph.link_derived,
                              in_flight=1, name="kfm-graph", on_done=lambda _done: run.checkpoint())
        run.checkpoint()
        if self.prune:
            orphans_left, orphans_deleted = 0, self._prune(graph, reader)
        else:
            # every published item was just MERGEd, so whatever else carries the label is an orphan
            orphans_left, orphans_deleted = max(0, graph.count("Item") - seen), 0
        return {"constraints_created": constraints, "items_seen": seen, "items_changed": changed,
                "derived_links_created": derived, "orphans_left": orphans_left, "orphans_deleted": orphans_deleted}

    def _coordinate(self, hub: ServiceHub, graph: GraphStore, reader: PostgisStore, grid: float,
                    run: RunContext) -> dict[str, Any]:
        """Inside the open snapshot: the shared nodes once, the partitions handed out and waited for (each upserts
        its items and their links, and with --prune deletes its orphans), then the whole graph compared."""
        constraints = graph.ensure_schema(contracts.load("graph", hub.settings.contracts_dir))
        converge.merge_nodes(reader, graph, prune=False)
        coordinator = Coordinator(hub.postgis(write=True), self.name, run.run_id, self.partitions)
        coordinator.open(reader.export_snapshot(), {"grid": grid, "prune": self.prune})
        rows = coordinator.wait(self.partition_wait, checkpoint=run.checkpoint, keepalive=reader.ping,
                                progress=lambda done: run.progress("partitions", done, self.partitions))
        done = [r["counts"] for r in rows]
        derived = run_bounded(chunks(reader.stream_dicts(derive.DERIVED_SQL), self.batch), graph.link_derived,
                              in_flight=1, name="kfm-graph", on_done=lambda _done: run.checkpoint())
        if self.prune:
            converge.merge_nodes(reader, graph, prune=True)
        diff = bucket_compare(reader, GraphSide(graph), store="graph label Item")
        if diff.missing or diff.stale or (self.prune and diff.orphaned):
            raise ActionFailed(self.name, "verify", diff.summary(),
                               hint="the graph still differs from the snapshot its partitions wrote; re-run")
        return {"constraints_created": constraints, "partitions": self.partitions,
                **{k: sum(int(d.get(k, 0)) for d in done) for k in ("items_seen", "items_changed", "orphans_deleted")},
                "derived_links_created": derived,
                "orphans_left": 0 if self.prune else diff.orphaned}

    def _prune(self, graph: GraphStore, reader: PostgisStore) -> int:
        """Delete the Items and reference nodes the canonical store no longer derives; return the Items deleted."""
        pending: list[str] = []

        def delete_orphan(kind: str, item_id: str) -> None:
            if kind != "orphaned":
                return
            pending.append(item_id)
            if len(pending) >= self.batch:
                graph.delete_items(pending)
                pending.clear()

        diff = graph_matches(reader, graph, store="graph", on_diff=delete_orphan)
        graph.delete_items(pending)
        converge.merge_nodes(reader, graph, prune=True)
        return diff.orphaned
