"""``kfm-maint reindex --targets graph``: upsert the knowledge graph from the canonical store.

Batched ``UNWIND`` + ``MERGE`` on the constrained keys, two writers while the next
batch is read from PostGIS. An item whose content_hash and links (activity, places,
derived-from items) are unchanged is not touched, so a second run changes nothing.
Item -> Item links (WAS_DERIVED_FROM) are made in a second pass, once every item
exists, so a link to an item of a later batch is never lost. Nodes that are no longer
in the canonical store are only counted (from the label count: every published item
was just merged), unless ``--prune`` (which, in production, sits behind the confirm
gate like every write) finds and deletes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import psycopg

from kfm_ops import contracts
from kfm_ops.clients.postgis import stream
from kfm_ops.consistency import canonical_pairs, compare, graph_pairs
from kfm_ops.hub import ServiceHub
from maintenance.actions.derive import grid_degrees, published_count, record_watermark, run_id_of, stream_rows
from maintenance.actions.pipeline import run_bounded
from maintenance.runner import Plan

DATASETS_SQL = """
SELECT id, title, license, publisher,
       encode(sha256(convert_to(concat_ws('|', id, title, license, publisher), 'UTF8')), 'hex') AS content_hash
FROM kfm.datasets WHERE status = 'published' ORDER BY id
"""
ACTIVITIES_SQL = """
SELECT DISTINCT a.id, a.label, a.software, a.version FROM kfm.prov_activities a
JOIN kfm.prov_links l ON l.subject = a.id AND l.relation = 'used'
JOIN kfm.datasets d ON d.id = l.object AND d.status = 'published' ORDER BY a.id
"""
USED_SQL = """
SELECT l.subject, l.object FROM kfm.prov_links l JOIN kfm.datasets d ON d.id = l.object AND d.status = 'published'
WHERE l.relation = 'used' ORDER BY 1, 2
"""
# Item -> Item links whose both ends are published, in their own pass after every item exists
# (a link may point at an item of a later batch).
DERIVED_SQL = """
SELECT l.subject, l.object FROM kfm.prov_links l
JOIN kfm.items s ON s.id = l.subject JOIN kfm.datasets sd ON sd.id = s.dataset_id AND sd.status = 'published'
JOIN kfm.items o ON o.id = l.object JOIN kfm.datasets od ON od.id = o.dataset_id AND od.status = 'published'
WHERE l.relation = 'wasDerivedFrom' ORDER BY 1, 2
"""
LINK_DERIVED = """
UNWIND $rows AS r
MATCH (i:Item {id: r.subject}) MATCH (s:Item {id: r.object})
WITH i, s WHERE NOT (i)-[:WAS_DERIVED_FROM]->(s)
CREATE (i)-[:WAS_DERIVED_FROM]->(s)
RETURN count(*) AS created
"""
# One round trip per batch. Items whose content_hash and links_hash are unchanged stop at the WHERE; changed
# and new items lose their outgoing relationships and get them re-CREATEd (no MERGE needed:
# an item reaching the CREATEs has none left). Their WAS_DERIVED_FROM links come back in the
# derived pass.
UPSERT_ITEMS = """
UNWIND $rows AS r
MERGE (i:Item {id: r.id})
WITH i, r WHERE i.content_hash IS NULL OR i.content_hash <> r.content_hash
                 OR i.links_hash IS NULL OR i.links_hash <> r.links_hash
CALL { WITH i MATCH (i)-[old]->() DELETE old }
SET i.dataset_id = r.dataset_id, i.title = r.title, i.sensitivity = r.sensitivity, i.geometry_wkt = r.geometry_wkt,
    i.content_hash = r.content_hash, i.links_hash = r.links_hash, i.updated_at = r.updated_at
WITH i, r
CALL { WITH i, r MATCH (d:Dataset {id: r.dataset_id}) CREATE (i)-[:IN_DATASET]->(d) }
CALL { WITH i, r MATCH (a:Activity {id: r.generated_by}) CREATE (i)-[:WAS_GENERATED_BY]->(a) }
CALL { WITH i, r UNWIND r.places AS pid MATCH (p:Place {id: pid}) CREATE (i)-[:LOCATED_IN]->(p) }
RETURN count(i) AS changed
"""


def graph_rows(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Canonical rows as upsert parameters: the Item properties and the ids its relationships point at.

    ``links_hash`` covers what an item points at (activity, places, derived-from items): the
    canonical content_hash does not, and a changed link must reach the graph too.
    """
    for r in rows:
        links = f"{r['generated_by'] or ''}|{','.join(r['places'])}|{','.join(r['derived_from'])}"
        yield {"id": r["id"], "dataset_id": r["dataset_id"], "title": r["title"], "sensitivity": r["sensitivity"],
               "geometry_wkt": r["geometry_wkt"], "content_hash": r["content_hash"],
               "links_hash": hashlib.blake2b(links.encode(), digest_size=16).hexdigest(),
               "updated_at": r["updated_at"].isoformat(), "generated_by": r["generated_by"],
               "places": list(r["places"])}


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(islice(rows, size)):
        yield batch


def ensure_constraints(handle: Any, contract: dict[str, Any]) -> int:
    existing = {r["name"] for r in handle.run("SHOW CONSTRAINTS YIELD name RETURN name")}
    created = 0
    for c in contract["constraints"]:
        if c["name"] not in existing:
            handle.run(f"CREATE CONSTRAINT {c['name']} IF NOT EXISTS FOR (n:{c['label']}) "
                       f"REQUIRE n.{c['property']} IS UNIQUE")
            created += 1
    return created


class SyncGraph:
    name = "sync-graph"
    stores = ("graph",)
    verify_markers = "graph"

    def __init__(self, *, prune: bool = False, batch_size: int = 2000) -> None:
        self.prune = prune
        self.batch = batch_size

    def plan(self, hub: ServiceHub) -> Plan:
        reader = hub.client("postgis")
        count, newest = published_count(reader)
        diff = compare(canonical_pairs(reader), graph_pairs(hub.client("graph")), store="graph",
                       first_n=hub.settings.checks.first_n)
        where = hub.settings.graph.where if hub.settings.graph else "?"
        return Plan(
            # the plan compares content hashes only: an item whose links alone changed is found by
            # its links_hash during the sync (reading every item's links here would double the cost)
            what=f"upsert {diff.missing + diff.stale} new or changed of {count} published items into the graph "
            "(and any whose links alone changed)"
            + (f", delete {diff.orphaned} orphaned items" if self.prune else ""),
            where=[f"graph {where}: labels Dataset, Item, Place, Activity"],
            how_much={"published": count, "missing": diff.missing, "stale": diff.stale, "orphaned": diff.orphaned,
                      "prune": self.prune},
            rollback="the graph is derived: re-run after restoring the canonical store, or restore a graph backup",
            steps=["create missing contract constraints", "upsert datasets, activities, places",
                   "upsert changed items and their relationships in batches",
                   "link derived items (WAS_DERIVED_FROM) once every item exists",
                   "delete orphaned items" if self.prune else "count orphaned items (no --prune)",
                   "record the sync watermark"],
            details={"nothing_to_do": diff.clean and newest is not None,
                     "orphan_ids": diff.orphaned_ids},
        )

    def apply(self, hub: ServiceHub, plan: Plan, progress: Callable[[str, int, int | None], None]) -> dict[str, Any]:
        graph = hub.writer("graph")
        reader = hub.client("postgis")
        control = hub.writer("postgis")
        grid = grid_degrees(hub)
        constraints = ensure_constraints(graph, contracts.load("graph", hub.settings.contracts_dir))
        total, watermark = published_count(reader)
        datasets = [dict(zip(("id", "title", "license", "publisher", "content_hash"), r, strict=True))
                    for r in reader.execute(DATASETS_SQL)]
        graph.run("UNWIND $rows AS r MERGE (d:Dataset {id: r.id}) SET d += r", rows=datasets)
        activities = [dict(zip(("id", "label", "software", "version"), r, strict=True))
                      for r in reader.execute(ACTIVITIES_SQL)]
        graph.run("UNWIND $rows AS r MERGE (a:Activity {id: r.id}) SET a += r", rows=activities)
        used = [{"activity": r[0], "dataset": r[1]} for r in reader.execute(USED_SQL)]
        graph.run("UNWIND $rows AS r MATCH (a:Activity {id: r.activity}) MATCH (d:Dataset {id: r.dataset}) "
                  "MERGE (a)-[:USED]->(d)", rows=used)
        places = [{"id": r[0], "name": r[1], "kind": r[2]}
                  for r in reader.execute("SELECT id, name, kind FROM kfm.places")]
        graph.run("UNWIND $rows AS r MERGE (p:Place {id: r.id}) SET p += r", rows=places)

        def upsert(rows: list[dict[str, Any]]) -> int:
            return int(graph.run(UPSERT_ITEMS, rows=rows)[0]["changed"])

        seen = 0

        def counted(batches: Iterator[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
            nonlocal seen
            for batch in batches:
                seen += len(batch)
                progress("graph items", seen, total)
                yield batch

        # Two writers while the next batch is read from PostGIS. Batches of items never touch each
        # other (Item -> Item links wait for the second pass); they share only the Dataset, Activity
        # and Place nodes, and a deadlock there is a transient error the driver retries.
        changed = run_bounded(counted(_batches(graph_rows(stream_rows(reader, grid, links=True)), self.batch)),
                              upsert, in_flight=2, name="kfm-graph")
        derived = run_bounded(_batches(stream(reader, DERIVED_SQL, row_factory=psycopg.rows.dict_row), self.batch),
                              lambda rows: int(graph.run(LINK_DERIVED, rows=rows)[0]["created"]),
                              in_flight=1, name="kfm-graph")

        if self.prune:
            orphans_left, orphans_deleted = 0, self._prune(graph, reader, [d["id"] for d in datasets])
        else:
            # every published item was just MERGEd, so whatever else carries the label is an orphan
            in_graph = graph.run("MATCH (i:Item) RETURN count(i) AS n")[0]["n"]
            orphans_left, orphans_deleted = max(0, in_graph - seen), 0
        record_watermark(control, "graph", watermark, run_id_of(control))
        return {"constraints_created": constraints, "items_seen": seen, "items_changed": changed,
                "derived_links_created": derived, "orphans_left": orphans_left, "orphans_deleted": orphans_deleted}

    def _prune(self, graph: Any, reader: Any, dataset_ids: list[str]) -> int:
        """Delete the Items and Datasets the canonical store no longer publishes; return the Items deleted."""
        pending: list[str] = []

        def delete_orphan(item_id: str) -> None:
            pending.append(item_id)
            if len(pending) >= self.batch:
                self._delete(graph, pending)

        diff = compare(canonical_pairs(reader), graph_pairs(graph), store="graph", on_orphan=delete_orphan)
        self._delete(graph, pending)
        graph.run("MATCH (d:Dataset) WHERE NOT d.id IN $ids DETACH DELETE d", ids=dataset_ids)
        return diff.orphaned

    @staticmethod
    def _delete(graph: Any, ids: list[str]) -> None:
        """Delete a page of orphans; the list is emptied for reuse."""
        if ids:
            graph.run("UNWIND $ids AS id MATCH (i:Item {id: id}) DETACH DELETE i", ids=ids)
            ids.clear()
