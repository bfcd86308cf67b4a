"""Cross-store consistency: each derived store compared with the canonical published items.

Two ways, one result (:class:`~kfm_ops.compare.Diff`):

- :func:`bucket_compare` — the bucket digests of both sides (:mod:`kfm_ops.buckets`,
  computed by each engine), then an id-by-id merge of the differing buckets only. What the
  checks and ``kfm-maint sync`` use: its cost follows the differences, not the catalog.
- :func:`search_matches` / :func:`graph_matches` — the order-free digest of every
  (id, content_hash) (:mod:`kfm_ops.digest`) or the full merge: what a rebuild's verify uses,
  reading every record's own values.

:func:`classify` dates each difference (the contract's change dating, docs/contracts.md) and
tells the *pending* ones — changes the store was not yet due to have — from the failures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from kfm_ops import buckets
from kfm_ops.compare import Diff, Pair, compare
from kfm_ops.digest import Digest
from kfm_ops.partition import Partition
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PostgisStore
from kfm_ops.stores.search import SearchStore
from kfm_ops.stores.search import reading as search_reading


class DerivedSide(Protocol):
    """What a derived store offers the bucket comparison."""

    def digests(self, which: list[int] | None = None) -> buckets.Digests: ...

    def pairs(self, which: list[int]) -> Iterator[Pair]: ...

    def pairs_of(self, ids: list[str]) -> list[Pair]: ...

    def dataset_ids(self, ids: list[str]) -> dict[str, str]: ...

    def datasets_present(self, dataset_ids: list[str]) -> set[str]: ...


@dataclass
class SearchSide:
    search: SearchStore
    index: str

    def digests(self, which: list[int] | None = None) -> buckets.Digests:
        return search_reading.bucket_digests(self.search.client, self.index, which)

    def pairs(self, which: list[int]) -> Iterator[Pair]:
        return search_reading.pairs_in_buckets(self.search.client, self.index, which)

    def pairs_of(self, ids: list[str]) -> list[Pair]:
        return search_reading.pairs_of(self.search.client, self.index, ids)

    def dataset_ids(self, ids: list[str]) -> dict[str, str]:
        return search_reading.dataset_ids(self.search.client, self.index, ids)

    def datasets_present(self, dataset_ids: list[str]) -> set[str]:
        return search_reading.datasets_present(self.search.client, self.index, dataset_ids)


@dataclass
class GraphSide:
    graph: GraphStore

    def digests(self, which: list[int] | None = None) -> buckets.Digests:
        return self.graph.bucket_digests(which)

    def pairs(self, which: list[int]) -> Iterator[Pair]:
        return self.graph.pairs_in_buckets(which)

    def pairs_of(self, ids: list[str]) -> list[Pair]:
        return self.graph.pairs_of(ids)

    def dataset_ids(self, ids: list[str]) -> dict[str, str]:
        return self.graph.dataset_ids(ids)

    def datasets_present(self, dataset_ids: list[str]) -> set[str]:
        return self.graph.datasets_present(dataset_ids)


class SharedDigests:
    """The bucket digests of one check run: the canonical ones shared by the checks of every store (PostgreSQL
    hashes the catalog once, not once per store), and — with :meth:`read_early` — each side's read concurrently
    while the checks before them run.

    A digest is used while younger than ``max_age`` seconds (counted from when its read began); a
    store's digests once. The differing buckets are always merged from fresh reads of both sides,
    so a digest read early can only hide a change made since it was read: younger than
    ``max_age`` (within the freshness SLA), as if the check had run that much earlier; the next run
    compares it.
    """

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._kept: dict[str, tuple[float, buckets.Digests]] = {}
        self._reading: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def read_early(self, key: str, read: Callable[[], buckets.Digests]) -> None:
        """Start ``read()`` in a thread (on connections of its own). Its error is left to the check that asks
        next: that one reads again, and reports what it meets."""

        def early() -> None:
            read_at = time.monotonic()
            try:
                found = read()
            except Exception:  # noqa: BLE001 — the check reads again and reports it
                return
            with self._lock:
                self._kept[key] = (read_at, found)

        with self._lock:
            if key in self._kept or key in self._reading:
                return
            self._reading[key] = threading.Thread(target=early, name=f"kfm-digests {key}", daemon=True)
            self._reading[key].start()

    def get(self, key: str, read: Callable[[], buckets.Digests], *, keep: bool = True) -> buckets.Digests:
        """The digests of ``key``: read early (waited for), kept from an earlier check, or ``read()`` now."""
        with self._lock:
            reading = self._reading.pop(key, None)
        if reading is not None:
            reading.join()
        with self._lock:
            kept = self._kept.get(key) if keep else self._kept.pop(key, None)
            if kept is None or time.monotonic() - kept[0] > self.max_age:
                read_at = time.monotonic()
                kept = (read_at, read())
                if keep:
                    self._kept[key] = kept
            return kept[1]

    def canonical(self, postgis: PostgisStore, partition: Partition | None = None) -> buckets.Digests:
        part = partition or Partition.whole()
        return self.get(f"canonical {part.label}", lambda: postgis.bucket_digests(partition))

    def derived(self, store: str, side: DerivedSide) -> buckets.Digests:
        return self.get(store, side.digests, keep=False)


def bucket_compare(postgis: PostgisStore, side: DerivedSide, *, store: str, first_n: int = 10,
                   on_diff: Callable[[str, str], None] | None = None, canonical: buckets.Digests | None = None,
                   derived: buckets.Digests | None = None, partition: Partition | None = None,
                   shared: SharedDigests | None = None) -> Diff:
    """Compare through bucket digests; merge id by id only the buckets that differ. ``canonical``, ``derived``:
    digests the caller has already (one snapshot, several stores); ``shared``: the digests of a check run (read
    early, the canonical ones kept for every store; ``store`` names the side). ``partition``: its buckets only,
    on both sides (given digests are cut to it too)."""
    part = partition or Partition.whole()
    read_canonical = shared.canonical if shared else lambda pg, p: pg.bucket_digests(p)

    def read_derived() -> buckets.Digests:
        return shared.derived(store, side) if shared else side.digests()

    if canonical is None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfm-buckets") as pool:
            canonical_future = pool.submit(read_canonical, postgis, partition)  # both engines sum at the same time
            derived = read_derived() if derived is None else derived
            canonical = canonical_future.result()
    elif derived is None:
        derived = read_derived()
    canonical, derived = part.only(canonical), part.only(derived)
    differing = buckets.differing(canonical, derived)
    if not differing:
        return Diff(store=store, first_n=first_n, compared=buckets.total(canonical))
    diff = compare(postgis.pairs_in_buckets(differing), side.pairs(differing), store=store, first_n=first_n,
                   on_diff=on_diff)
    diff.compared += buckets.total({b: v for b, v in canonical.items() if b not in set(differing)})
    return diff


@dataclass
class Lag:
    """The differences of a comparison, dated: pending (not yet due) and due (a failure)."""

    watermark: datetime | None
    pending: dict[str, list[str]] = field(default_factory=lambda: {"missing": [], "orphaned": [], "stale": []})
    due: dict[str, list[str]] = field(default_factory=lambda: {"missing": [], "orphaned": [], "stale": []})

    @property
    def pending_count(self) -> int:
        return sum(map(len, self.pending.values()))

    @property
    def due_count(self) -> int:
        return sum(map(len, self.due.values()))


def classify(differences: list[tuple[str, str]], postgis: PostgisStore, side: DerivedSide, *,
             watermark: datetime | None, now: datetime, max_lag: timedelta, margin: timedelta,
             related: Callable[[list[str]], dict[str, datetime]] | None = None) -> Lag:
    """Date every difference and sort it: pending when its change is newer than the store's watermark (less a
    margin for transactions in flight at sync time) and younger than the freshness SLA; due otherwise.

    A stale record is dated by its item's ``updated_at``; a missing one too, or by its dataset's when the
    store holds none of that dataset's records (the dataset was just published: a deletion elsewhere in a
    dataset the store has also moves its ``updated_at``, and must not excuse an old gap); an orphan by its
    dataset (unpublished, retired, or one of its items deleted), found through the canonical item or, if
    that is gone, the dataset the derived record names. ``related`` dates what else a record depends on (a
    graph item's derived-from targets): the later change counts. A difference that cannot be dated, or a
    store never synced, is due.
    """
    lag = Lag(watermark)
    ids = [item_id for _kind, item_id in differences]
    known: dict[str, tuple[datetime, str, datetime]] = {}
    for start in range(0, len(ids), 10_000):
        known.update(postgis.item_times(ids[start:start + 10_000]))
    missing_datasets = sorted({known[i][1] for kind, i in differences if kind == "missing" and i in known})
    published_now = set(missing_datasets) - side.datasets_present(missing_datasets) if missing_datasets else set()
    gone = [item_id for kind, item_id in differences if kind == "orphaned" and item_id not in known]
    owners = side.dataset_ids(gone) if gone else {}
    dataset_times = postgis.dataset_times(sorted(set(owners.values()))) if owners else {}
    times: dict[str, datetime] = {}
    for kind, item_id in differences:
        if item_id in known:
            item_changed, dataset, dataset_changed = known[item_id]
            explained = kind == "orphaned" or (kind == "missing" and dataset in published_now)
            times[item_id] = max(item_changed, dataset_changed) if explained else item_changed
        elif item_id in owners and owners[item_id] in dataset_times:
            times[item_id] = dataset_times[owners[item_id]]
    if related is not None:
        others = related([item_id for kind, item_id in differences if kind != "orphaned"])
        times.update({i: max(t, times[i]) if i in times else t for i, t in others.items()})
    for kind, item_id in differences:
        (lag.pending if pending(times.get(item_id), watermark=watermark, now=now, max_lag=max_lag, margin=margin)
         else lag.due)[kind].append(item_id)
    return lag


def derived_link_times(postgis: PostgisStore, graph: GraphStore, ids: list[str]) -> dict[str, datetime]:
    """When the derived-from links of each of ``ids`` last changed: the newest change among the items it points
    at, as the graph still has them (a target since deleted or unpublished: its dataset dates it) or as the
    canonical store has them (a target published since)."""
    targets: dict[str, dict[str, str | None]] = {}
    for row in graph.run("UNWIND $ids AS id MATCH (:Item {id: id})-[:WAS_DERIVED_FROM]->(t:Item) "
                         "RETURN id, t.id AS t, t.dataset_id AS d", ids=ids):
        targets.setdefault(row["id"], {})[row["t"]] = row["d"]
    for subject, target, dataset in postgis.rows(
            "SELECT l.subject, l.object, o.dataset_id FROM kfm.prov_links l LEFT JOIN kfm.items o ON o.id = l.object "
            "WHERE l.relation = 'wasDerivedFrom' AND l.subject = ANY(%s)", (ids,)):
        targets.setdefault(subject, {}).setdefault(target, dataset)
    items = postgis.change_times(sorted({t for found in targets.values() for t in found}))
    datasets = postgis.dataset_times(sorted({d for found in targets.values() for d in found.values() if d}))
    times: dict[str, datetime] = {}
    for subject, found in targets.items():
        dated = [items.get(t) or (datasets.get(d) if d else None) for t, d in found.items()]
        known = [t for t in dated if t is not None]
        if known:
            times[subject] = max(known)
    return times


def pending(changed: datetime | None, *, watermark: datetime | None, now: datetime, max_lag: timedelta,
            margin: timedelta) -> bool:
    """Whether a difference dated ``changed`` is not yet due: newer than the watermark (less the margin for
    transactions in flight at sync time) and younger than the freshness SLA. Undatable, or never synced: due."""
    return (watermark is not None and changed is not None and changed > watermark - margin
            and now - changed <= max_lag)


def search_matches(postgis: PostgisStore, search: SearchStore, index: str, *, store: str,
                   first_n: int = 10, canonical: Digest | Future[Digest] | None = None) -> Diff:
    """Compare a search index (or alias) with the canonical set: digests first, the merge on a mismatch.

    The canonical digest (streamed from PostGIS, summed here; or given, or under way: a partitioned
    rebuild's partitions each summed theirs, a rebuild starts it before its refresh) is computed in a
    thread while the cluster computes its own. Equal digests give a clean Diff with ``compared`` = the
    count; a mismatch runs :func:`compare`, which names the missing, orphaned and stale ids.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfm-digest") as pool:
        summed = canonical if isinstance(canonical, Future) else pool.submit(
            lambda: canonical if canonical is not None else postgis.published_digest())
        derived = search_reading.search_digest(search.client, index)
        if summed.result() == derived:
            return Diff(store=store, first_n=first_n, compared=derived.count)
    return compare(postgis.published_pairs(), search_reading.search_pairs(search.client, index), store=store,
                   first_n=first_n)


def graph_matches(postgis: PostgisStore, graph: GraphStore, *, store: str, first_n: int = 10,
                  on_diff: Callable[[str, str], None] | None = None) -> Diff:
    """Compare the graph's Item nodes with the canonical set (sorted merge of every record)."""
    return compare(postgis.published_pairs(), graph.item_pairs(), store=store, first_n=first_n, on_diff=on_diff)
