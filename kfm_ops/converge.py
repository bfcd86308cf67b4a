"""Bringing a derived store to exactly one canonical snapshot, at the cost of what differs.

Used by ``kfm-maint sync`` (the live stores) and by ``kfm-maint reindex`` (the rounds that
converge a freshly built index with the changes committed while it was built, before and
right after the alias swap). Each function is called inside :meth:`PostgisStore.snapshot`
of ``reader``: the bucket digests (:mod:`kfm_ops.buckets`) name the records that differ from
that snapshot, only those are derived again and written, orphans are deleted, and a second
digest comparison proves the store now equals the snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kfm_ops import buckets, derive
from kfm_ops.buckets import Digests
from kfm_ops.compare import compare
from kfm_ops.consistency import GraphSide, SearchSide, bucket_compare
from kfm_ops.errors import ActionFailed
from kfm_ops.partition import Partition
from kfm_ops.pipeline import chunks, run_bounded
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PostgisStore
from kfm_ops.stores.search import SearchStore
from kfm_ops.stores.search.bulk import BulkLoader

IDS_PER_QUERY = 5000


@dataclass
class Converged:
    """What one convergence wrote: records derived again (new or changed), orphans deleted."""

    compared: int = 0
    upserted: int = 0
    deleted: int = 0
    changed_ids: list[str] = field(default_factory=list)
    finding_s: float = 0.0  # comparing digests with the snapshot: the catalog's size sets it, not the changes

    @property
    def changes(self) -> int:
        return self.upserted + self.deleted

    def as_dict(self) -> dict[str, Any]:
        return {"compared": self.compared, "upserted": self.upserted, "deleted": self.deleted}


class _Once:
    """The snapshot's bucket digests, computed by whichever of its sessions asks first; the others wait."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.digests: Digests | None = None


class Snapshot:
    """The canonical side of one snapshot (its ``partition``: a bucket range, else every bucket): its bucket
    digests, computed once for every store synced to it — also when a second session joined to the snapshot
    (:meth:`through`) reads for another store in another thread."""

    def __init__(self, reader: PostgisStore, partition: Partition | None = None, *, _once: _Once | None = None) -> None:
        self.reader = reader
        self.partition = partition or Partition.whole()
        self._once = _once or _Once()

    @property
    def digests(self) -> Digests:
        once = self._once
        with once.lock:
            if once.digests is None:
                once.digests = self.reader.bucket_digests(self.partition)
            return once.digests

    def through(self, reader: PostgisStore) -> Snapshot:
        """The same snapshot read through ``reader``, a session joined to it (:meth:`PostgisStore.joined`)."""
        return Snapshot(reader, self.partition, _once=self._once)


def _differences(snapshot: Snapshot, side: SearchSide | GraphSide,
                 store: str) -> tuple[list[str], list[str], int, list[int]]:
    """(ids to derive again, ids to delete, records compared, buckets that differ) against the snapshot, in its
    partition."""
    upsert: list[str] = []
    delete: list[str] = []

    def note(kind: str, item_id: str) -> None:
        (delete if kind == "orphaned" else upsert).append(item_id)

    derived = snapshot.partition.only(side.digests())
    diff = bucket_compare(snapshot.reader, side, store=store, on_diff=note, canonical=snapshot.digests,
                          derived=derived, partition=snapshot.partition)
    return upsert, delete, diff.compared, buckets.differing(snapshot.digests, derived)


def _proven(snapshot: Snapshot, side: SearchSide | GraphSide, touched: list[int], store: str, action: str) -> None:
    """The buckets this run wrote now equal the snapshot (the others did before, and were not written)."""
    if not touched:
        return
    after = side.digests(touched)
    still = [b for b in touched if snapshot.digests.get(b) != after.get(b)]
    if still:
        diff = compare(snapshot.reader.pairs_in_buckets(still), side.pairs(still), store=store)
        raise ActionFailed(action, "verify", diff.summary() if not diff.clean else f"{len(still)} buckets differ",
                           hint="the store still differs from the snapshot it was synced to; re-run")


@dataclass
class Scope:
    """What a convergence looks at: every bucket of the snapshot (its digests find the differences), or only
    the records a change slot named (``ids``, sorted); either way it proves what it wrote."""

    snapshot: Snapshot
    ids: list[str] | None = None

    def differences(self, side: SearchSide | GraphSide, store: str) -> tuple[list[str], list[str], int, list[int]]:
        if self.ids is None:
            return _differences(self.snapshot, side, store)
        upsert: list[str] = []
        delete: list[str] = []
        compared = 0
        for part in chunks(self.ids, IDS_PER_QUERY):
            diff = compare(iter(self.snapshot.reader.pairs_of(part)), iter(side.pairs_of(part)), store=store,
                           on_diff=lambda kind, item_id: (delete if kind == "orphaned" else upsert).append(item_id))
            compared += diff.compared
        return upsert, delete, compared, []

    def prove(self, side: SearchSide | GraphSide, touched: list[int], store: str, action: str) -> None:
        if self.ids is None:
            _proven(self.snapshot, side, touched, store, action)
            return
        for part in chunks(self.ids, IDS_PER_QUERY):
            diff = compare(iter(self.snapshot.reader.pairs_of(part)), iter(side.pairs_of(part)), store=store)
            if not diff.clean:
                raise ActionFailed(action, "verify", diff.summary(),
                                   hint="the store still differs from the snapshot it was synced to; re-run")


def search(reader: PostgisStore, store: SearchStore, index: str, grid: float, loader: BulkLoader, *, action: str,
           checkpoint: Callable[[], None], snapshot: Snapshot | None = None, ids: list[str] | None = None) -> Converged:
    """Make ``index`` equal the reader's snapshot (of ``ids`` only, when given): derive again what differs,
    delete orphans, prove it."""
    scope = Scope(snapshot or Snapshot(reader), ids)
    side = SearchSide(store, index)
    started = time.monotonic()
    if ids is None:
        store.client.indices.refresh(index=index)  # the digests are searches; mget reads by id without one
    upsert, delete, compared, touched = scope.differences(side, f"search index {index}")
    result = Converged(compared=compared, changed_ids=upsert + delete, finding_s=time.monotonic() - started)
    for part in chunks(upsert, IDS_PER_QUERY):
        result.upserted += loader.load(derive.search_documents(reader, grid, ids=part))
        checkpoint()
    result.deleted = loader.delete(delete)
    if ids is None:
        store.client.indices.refresh(index=index)
    scope.prove(side, touched, f"search index {index}", action)
    return result


def graph(reader: PostgisStore, store: GraphStore, grid: float, *, batch: int, action: str,
          checkpoint: Callable[[], None], since: Any = None, snapshot: Snapshot | None = None,
          ids: list[str] | None = None, relink: list[str] | None = None, references: bool = True) -> Converged:
    """Make the graph's Items (of the snapshot's partition; of ``ids`` only, when given) equal the reader's
    snapshot (links of items changed ``since``, or of ``relink``, too); prove it. The whole graph (no partition)
    also gets its datasets, activities and places merged and those no longer derived pruned (when
    ``references`` may have changed); a partitioned run's coordinator does that once, before its partitions."""
    scope = Scope(snapshot or Snapshot(reader), ids)
    mine = scope.snapshot.partition
    side = GraphSide(store)
    started = time.monotonic()
    upsert, delete, compared, touched = scope.differences(side, "graph label Item")
    result = Converged(compared=compared, changed_ids=upsert + delete, finding_s=time.monotonic() - started)
    if mine.count == 1 and references:
        merge_nodes(reader, store, prune=True)
    if ids is not None:
        linked = relink or []  # a change slot names the items whose links changed too
    else:
        linked = [r[0] for r in reader.rows(derive.CHANGED_SINCE_SQL, (since,))
                  if mine.holds(buckets.fields(r[0], "")[0])] if since is not None else []
    # an item whose links alone changed keeps its content_hash: items changed since the last sync, and items
    # derived from one that changed or left (a derived-from link exists only between published items) — as the
    # canonical store links them, and as the graph does (a deleted item's links are gone from the canonical store).
    # Those may lie in another partition: re-linking them here is the same write from the same snapshot.
    changed = upsert + delete
    pointing = set(store.derived_from_any(changed)) if changed else set()
    pointing |= {r[0] for r in reader.rows(derive.DERIVED_TO_SQL, (changed,))} if changed else set()
    relink = sorted((set(upsert) | set(linked) | pointing) - set(delete))  # unpublished ones derive nothing
    for part in chunks(relink, IDS_PER_QUERY):
        result.upserted += run_bounded(chunks(derive.graph_items(reader, grid, ids=part), batch),
                                       store.upsert_items, in_flight=2, name="kfm-graph")
        store.link_derived(reader.dicts(derive.DERIVED_SQL_FOR_IDS, (part,)))
        checkpoint()
    for part in chunks(delete, batch):
        store.delete_items(part)
        result.deleted += len(part)
    scope.prove(side, touched, "graph label Item", action)
    return result


def merge_nodes(reader: PostgisStore, store: GraphStore, *, prune: bool) -> int:
    """Datasets, activities, places and the USED links: the nodes items point at (few; merged whole). With
    ``prune``, those no longer derived go too (a retired dataset, its activity). Returns how many went."""
    pruned = 0
    for label, sql in derive.REFERENCE_SQL.items():
        rows = reader.dicts(sql)
        store.merge_nodes(label, rows)
        if prune:
            pruned += store.retain(label, [r["id"] for r in rows])
    used = reader.dicts(derive.USED_SQL)
    store.merge_used(used)
    if prune:
        pruned += store.retain_used(used)
    return pruned
