"""The content checks' scrub slices (kfm_ops.content.scrub_slice) and how a partition is asked for in each engine."""

from __future__ import annotations

from kfm_ops.content import scrub_slice
from kfm_ops.partition import Partition


def test_small_catalogs_are_read_whole() -> None:
    assert scrub_slice(20_000, 20_000, 3600, 1e9) == Partition.whole()
    assert scrub_slice(5_000_000, 0, 3600, 1e9) == Partition.whole()  # 0: every record every run


def test_a_large_catalog_is_read_one_slice_per_period_round_robin() -> None:
    slices = [scrub_slice(1_000_000, 20_000, 3600, hour * 3600 + 5) for hour in range(100)]
    assert {s.count for s in slices} == {50}
    assert [s.index for s in slices[:51]] == [*range(50), 0]  # the next slice every hour, then again from the first
    assert scrub_slice(10**9, 1, 1, 0).count == 4096  # never finer than one bucket


def test_partitions_in_opensearch_and_cypher() -> None:
    assert Partition.whole().search_query() is None and Partition.whole().cypher() == "true"
    second = Partition(1, 4)
    assert second.search_query() == {"range": {"sync_bucket": {"gte": 1024, "lt": 2048}}}
    assert second.cypher() == "(i.sync_bucket >= 1024 AND i.sync_bucket < 2048)"
    first = Partition(0, 4)  # also the records written before the bucket fields existed
    assert "must_not" in str(first.search_query()) and "IS NULL" in first.cypher()
    assert second.within("search index x", "scrub slice") == "search index x, scrub slice 1/4 (buckets 1024-2047)"
