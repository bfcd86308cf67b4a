"""The bucket digests a check run shares and reads early (kfm_ops.consistency.SharedDigests)."""

from __future__ import annotations

import threading
import time
from typing import Any

from kfm_ops.consistency import SharedDigests
from kfm_ops.partition import Partition


class Counting:
    """Counts how often the digests are read (the digests themselves are the engines' business)."""

    def __init__(self) -> None:
        self.reads: list[Partition | None] = []

    def bucket_digests(self, partition: Partition | None = None) -> dict[int, tuple[int, int, int]]:
        self.reads.append(partition)
        return {len(self.reads): (1, 2, 3)}

    digests = bucket_digests  # a derived side's read


def test_canonical_digests_are_read_once_per_partition_while_young() -> None:
    postgis: Any = Counting()
    shared = SharedDigests(max_age=60)
    assert shared.canonical(postgis) == shared.canonical(postgis, Partition.whole()) == {1: (1, 2, 3)}
    assert shared.canonical(postgis, Partition(0, 2)) == {2: (1, 2, 3)}  # another partition: its own read
    assert shared.canonical(postgis, Partition(0, 2)) == {2: (1, 2, 3)}
    assert postgis.reads == [None, Partition(0, 2)]


def test_read_again_once_older_than_max_age() -> None:
    postgis: Any = Counting()
    shared = SharedDigests(max_age=0.01)
    first = shared.canonical(postgis)
    time.sleep(0.02)
    assert shared.canonical(postgis) != first and len(postgis.reads) == 2


def test_a_store_read_early_is_waited_for_and_used_once() -> None:
    side: Any = Counting()
    shared = SharedDigests(max_age=60)
    release = threading.Event()

    def slow() -> dict[int, tuple[int, int, int]]:
        release.wait(5)
        return {7: (1, 1, 1)}

    shared.read_early("search", slow)
    threading.Timer(0.05, release.set).start()
    assert shared.derived("search", side) == {7: (1, 1, 1)} and side.reads == []  # the early read, waited for
    assert shared.derived("search", side) == {1: (1, 2, 3)}  # a store's digests serve one comparison


def test_an_early_read_that_failed_is_read_again_by_the_check() -> None:
    side: Any = Counting()
    shared = SharedDigests(max_age=60)

    def broken() -> dict[int, tuple[int, int, int]]:
        raise ConnectionError("refused")

    shared.read_early("graph", broken)
    assert shared.derived("graph", side) == {1: (1, 2, 3)}  # the check's own read meets (and reports) any error
