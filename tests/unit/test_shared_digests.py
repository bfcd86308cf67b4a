"""The canonical bucket digests a check run shares between its cross-store comparisons (kfm_ops.consistency)."""

from __future__ import annotations

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


def test_read_once_per_partition_while_young() -> None:
    postgis: Any = Counting()
    shared = SharedDigests(max_age=60)
    assert shared(postgis) == shared(postgis, Partition.whole()) == {1: (1, 2, 3)}
    assert shared(postgis, Partition(0, 2)) == {2: (1, 2, 3)}  # another partition: its own read
    assert shared(postgis, Partition(0, 2)) == {2: (1, 2, 3)}
    assert postgis.reads == [None, Partition(0, 2)]


def test_read_again_once_older_than_max_age() -> None:
    postgis: Any = Counting()
    shared = SharedDigests(max_age=0.01)
    first = shared(postgis)
    time.sleep(0.02)
    assert shared(postgis) != first and len(postgis.reads) == 2
