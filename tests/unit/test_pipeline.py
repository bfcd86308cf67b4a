"""Chunking and the bounded runner: sizes, order, failure and results."""

from __future__ import annotations

import threading
import time

import pytest

from kfm_ops.pipeline import chunks, run_bounded


def test_chunks_close_at_the_item_limit() -> None:
    assert [len(c) for c in chunks(range(10), 4)] == [4, 4, 2]
    assert list(chunks([], 4)) == []


def test_chunks_close_at_the_size_limit_but_never_empty() -> None:
    docs = ["a" * 6, "b" * 6, "c" * 20, "d"]
    assert list(chunks(docs, 100, 10, size=len)) == [["a" * 6], ["b" * 6], ["c" * 20], ["d"]]
    assert list(chunks(docs, 100, 1000, size=len)) == [docs]


def test_run_bounded_sums_results_and_keeps_at_most_n_in_flight() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(unit: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return unit

    progress: list[int] = []
    assert run_bounded(range(20), work, in_flight=3, name="t", on_done=progress.append) == sum(range(20))
    assert peak <= 3 and progress[-1] == sum(range(20))


def test_run_bounded_stops_at_the_first_failure() -> None:
    started: list[int] = []

    def work(unit: int) -> int:
        started.append(unit)
        if unit == 2:
            raise RuntimeError("unit 2 failed")
        return 1

    with pytest.raises(RuntimeError, match="unit 2 failed"):
        run_bounded(range(1000), work, in_flight=2, name="t")
    assert len(started) < 10
