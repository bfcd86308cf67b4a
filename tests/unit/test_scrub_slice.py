"""The content checks' scrub slices (kfm_ops.content.scrub_slice) and how a slice is asked for in each engine."""

from __future__ import annotations

import bisect
import itertools

import pytest

from kfm_ops.content import SAMPLE_PER_SLICE, scrub_slice
from kfm_ops.partition import IdRange, Partition

CATALOG = [f"kfm-item-{n:07d}" for n in range(100_000)]  # sorted


def sample(wanted: int) -> list[str]:
    """Every len(CATALOG) // wanted-th id, in another order: what a page sample of the catalog draws."""
    return CATALOG[::len(CATALOG) // wanted][::-1]


def test_small_catalogs_are_read_whole() -> None:
    never = pytest.fail  # no sample is drawn for a catalog read whole
    assert scrub_slice(20_000, 20_000, 3600, 1e9, never) == Partition.whole()
    assert scrub_slice(5_000_000, 0, 3600, 1e9, never) == Partition.whole()  # 0: every record every run
    assert scrub_slice(1_000_000, 20_000, 3600, 1e9, lambda _n: ["a", "b"]) == Partition.whole()  # estimate far off


def test_a_large_catalog_is_read_one_id_range_per_period_round_robin() -> None:
    slices = [scrub_slice(100_000, 2_000, 3600, hour * 3600 + 5, sample) for hour in range(100)]
    assert {s.count for s in slices} == {50}
    assert [s.index for s in slices[:51]] == [*range(50), 0]  # the next slice every hour, then again from the first
    ranges = [s for s in slices[:50] if isinstance(s, IdRange)]
    assert len(ranges) == 50 and ranges[0].low is None and ranges[-1].high is None
    assert all(a.high == b.low for a, b in itertools.pairwise(ranges))  # adjacent: every id in one
    edges = [0, *(bisect.bisect_left(CATALOG, r.high) for r in ranges[:-1]), len(CATALOG)]
    sizes = [b - a for a, b in itertools.pairwise(edges)]
    assert all(r.holds(CATALOG[a]) and not r.holds(CATALOG[b]) for r, a, b in zip(ranges, edges, edges[1:-1],
                                                                                    strict=False))
    assert sum(sizes) == len(CATALOG) and max(sizes) - min(sizes) <= len(CATALOG) // (50 * SAMPLE_PER_SLICE) * 2
    assert scrub_slice(10**9, 1, 1, 0, lambda n: [str(i) for i in range(n)]).count == 4096  # a bounded sample


def test_partitions_in_opensearch_and_cypher() -> None:
    assert Partition.whole().search_query() is None and Partition.whole().cypher() == "true"
    second = Partition(1, 4)
    assert second.search_query() == {"range": {"sync_bucket": {"gte": 1024, "lt": 2048}}}
    assert second.cypher() == "(i.sync_bucket >= 1024 AND i.sync_bucket < 2048)"
    first = Partition(0, 4)  # also the records written before the bucket fields existed
    assert "must_not" in str(first.search_query()) and "IS NULL" in first.cypher()
    assert second.within("search index x", "scrub slice") == "search index x, scrub slice 1/4 (buckets 1024-2047)"


def test_id_ranges_in_sql_opensearch_and_cypher() -> None:
    middle = IdRange(1, 3, "b'", "c")  # a quote in an id stays a parameter value, never SQL or Cypher text
    assert middle.where("i.id") == 'i.id COLLATE "C" >= %(slice_low)s AND i.id COLLATE "C" < %(slice_high)s'
    assert middle.params() == {"slice_low": "b'", "slice_high": "c"}
    assert middle.search_query() == {"range": {"id": {"gte": "b'", "lt": "c"}}}
    assert middle.cypher() == "i.id >= $slice_low AND i.id < $slice_high"
    first = IdRange(0, 3, None, "b'")
    assert first.params() == {"slice_high": "b'"} and "slice_low" not in first.where() + first.cypher()
    assert first.within("search index x", "scrub slice") == "search index x, scrub slice 0/3 (ids (first) to b')"
    assert IdRange(0, 1, None, None).search_query() is None and IdRange(0, 1, None, None).cypher() == "true"
    assert IdRange.of(["b", "a", "c", "d"], 1, 2) == IdRange(1, 2, "c", None)
