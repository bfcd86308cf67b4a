"""Content-level comparison: each derived record against the record the derive code makes now.

``content_hash`` is the fast path of the consistency checks, but the derive step copies it: a
record edited in place (a title, a sensitivity label, a lost relationship, a stale cached
extent) keeps it. Here the records themselves are compared — the search document, the graph
Item node with its relationships, the cache summary — with the expected one re-derived from
the canonical store by the same code that writes it (:mod:`kfm_ops.derive`).

Each side's record becomes a digest of its canonical JSON (sorted keys); the two id-ordered
streams are merged (:func:`kfm_ops.compare.compare`: memory flat at any size); for the first
records that differ, both versions are read again and compared field by field. The digests are
computed here, on the streams: neither OpenSearch (no digest function in painless) nor Neo4j
(none in Cypher without a plugin) can hash a whole record, and the expected side is derived in
Python anyway.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kfm_ops import derive
from kfm_ops.buckets import BUCKETS
from kfm_ops.compare import Diff, compare
from kfm_ops.partition import IdRange, Partition, Slice
from kfm_ops.pipeline import ahead
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PostgisStore
from kfm_ops.stores.search import SearchStore
from kfm_ops.stores.search import reading as search_reading

Record = dict[str, Any]


def digest(record: Any) -> str:
    """A digest of the whole record: its JSON with sorted keys (the same value, the same digest)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def fields_differing(expected: Record, actual: Record, prefix: str = "") -> list[str]:
    """The fields (dotted, one level into nested records) whose values differ, or that one side lacks."""
    found = []
    for key in sorted(set(expected) | set(actual)):
        name = f"{prefix}{key}"
        if key not in actual:
            found.append(f"{name} (missing)")
        elif key not in expected:
            found.append(f"{name} (unexpected)")
        elif expected[key] != actual[key]:
            both_records = isinstance(expected[key], dict) and isinstance(actual[key], dict) and not prefix
            found += fields_differing(expected[key], actual[key], f"{name}.") if both_records else [name]
    return found


@dataclass
class ContentDiff:
    """How a store's records differ from their derivation, with the differing fields of the first stale ones."""

    diff: Diff
    fields: dict[str, list[str]] = field(default_factory=dict)

    def stale_lines(self) -> list[str]:
        return [f"{i} ({', '.join(f)})" for i, f in self.fields.items()]


def _compare(expected: Iterable[tuple[str, Record]], actual: Iterable[tuple[str, Record]], *, store: str,
             first_n: int, on_diff: Callable[[str, str], None] | None,
             reread: Callable[[list[str]], tuple[dict[str, Record], dict[str, Record]]]) -> ContentDiff:
    # the canonical side is derived in a thread of its own while the store's records are read
    diff = compare(ahead((i, digest(r)) for i, r in expected), ((i, digest(r)) for i, r in actual), store=store,
                   first_n=first_n, on_diff=on_diff)
    result = ContentDiff(diff)
    if diff.stale_ids:
        want, have = reread(diff.stale_ids)
        for item_id in diff.stale_ids:
            if item_id in want and item_id in have:  # else it changed again since: named, without fields
                result.fields[item_id] = fields_differing(want[item_id], have[item_id]) or ["(changed since)"]
    return result


SAMPLE_PER_SLICE = 100
"""Ids sampled per scrub slice to place its boundaries: slices within about 10 % of the same size."""


def scrub_slice(items: int, max_records: int, slice_seconds: float, now: float,
                sample: Callable[[int], Sequence[str]], *, collated: bool = False) -> Slice:
    """The share of the catalog (of about ``items`` items) one run's content checks read.

    All of it up to ``max_records`` (or when that is 0); else one of N = ceil(items / max_records)
    id ranges: the one the clock points at, the next every ``slice_seconds``, round robin. A run
    scheduled every ``slice_seconds`` reads the whole catalog every N runs — a scrub, as storage
    systems verify their blocks — and each run stays about ``max_records`` long. The boundaries
    are quantiles of ``sample(n)``, about n ids of the catalog (:meth:`PostgisStore.id_sample`:
    the same pages every run, so they move only as those pages change); ``collated``: the id column
    sorts in byte order already (:meth:`PostgisStore.ids_sort_bytewise`).
    """
    if max_records == 0 or items <= max_records:
        return Partition.whole()
    count = min(BUCKETS, -(-items // max_records))
    ids = sample(count * SAMPLE_PER_SLICE)
    if len(set(ids)) < count:  # the estimate was far above the catalog: a small catalog is read whole
        return Partition.whole()
    return IdRange.of(ids, int(now // slice_seconds) % count, count, collated=collated)


def search(postgis: PostgisStore, search: SearchStore, index: str, grid: float, *, first_n: int = 10,
           on_diff: Callable[[str, str], None] | None = None, partition: Slice | None = None) -> ContentDiff:
    """Every document of ``index`` (of ``partition``) against the document the reindex would write now."""

    def expected(ids: list[str] | None = None) -> Iterator[tuple[str, Record]]:
        return ((i, json.loads(doc)) for i, doc in derive.search_documents(
            postgis, grid, ids=ids, partition=None if ids else partition, in_id_order=True))

    def reread(ids: list[str]) -> tuple[dict[str, Record], dict[str, Record]]:
        return dict(expected(ids)), search_reading.sources(search.client, index, ids)

    query = partition.search_query() if partition else None
    return _compare(expected(), search_reading.search_sources(search.client, index, query=query),
                    store=f"search index {index}", first_n=first_n, on_diff=on_diff, reread=reread)


def graph(postgis: PostgisStore, graph: GraphStore, grid: float, *, first_n: int = 10,
          on_diff: Callable[[str, str], None] | None = None, partition: Slice | None = None) -> ContentDiff:
    """Every Item node (of ``partition``), with its relationships, against the node the graph sync would leave
    now."""

    def reread(ids: list[str]) -> tuple[dict[str, Record], dict[str, Record]]:
        return dict(derive.graph_records(postgis, grid, ids=ids)), dict(graph.item_records(ids=ids))

    within, params = (partition.cypher(), partition.params()) if partition else ("true", {})
    return _compare(derive.graph_records(postgis, grid, partition=partition),
                    graph.item_records(within=within, params=params),
                    store="graph label Item", first_n=first_n, on_diff=on_diff, reread=reread)


def records(expected: dict[str, Record], actual: dict[str, Record], *, store: str,
            first_n: int = 10) -> ContentDiff:
    """Few records compared in memory: the cache summaries, the graph's Dataset, Activity and Place nodes."""
    return _compare(sorted(expected.items()), sorted(actual.items()), store=store, first_n=first_n,
                    on_diff=None, reread=lambda _ids: (expected, actual))
