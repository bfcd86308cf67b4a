"""Chunking, the bounded runner and the read-ahead: sizes, order, failure and results."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from kfm_ops.pipeline import ahead, chunks, run_bounded


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


def test_ahead_hands_over_every_item_in_order_and_the_producers_error() -> None:
    assert list(ahead(iter(range(2345)), depth=2, batch=100)) == list(range(2345))

    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError, match="went away"):
        list(ahead(failing(), batch=1))


def test_ahead_stops_its_producer_when_the_consumer_stops() -> None:
    produced: list[int] = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    stream = ahead(endless(), depth=2, batch=10)
    assert next(stream) == 0
    stream.close()  # joins the producer: it stopped at its next batch
    assert len(produced) <= 10 * 5  # the queue (2), the batch taken, the one being handed, one item of the next


def test_ahead_closes_a_generator_left_early_in_its_own_thread() -> None:
    closed_in: list[str] = []

    def reading() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed_in.append(threading.current_thread().name)

    stream = ahead(reading(), depth=1, batch=10, name="kfm-test-ahead")
    next(stream)
    stream.close()
    assert closed_in == ["kfm-test-ahead"]
