"""Bounded work for the derived stores: chunking a stream, and at most N units in flight.

The caller's iterator produces the next unit (reading PostGIS) while at most
``in_flight`` units are being written. The first failure, or SIGTERM, stops it:
queued units never start and running ones end within their own deadline.
(Not ``opensearchpy.helpers.parallel_bulk``: its pool deadlocks when the consumer
stops early while the bounded task queue is full, so an interrupted run never exits.)
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar, cast

T = TypeVar("T")
B = TypeVar("B", bound=Sized)


def chunks(items: Iterable[T], max_items: int, max_size: int | None = None,
           size: Callable[[T], int] | None = None) -> Iterator[list[T]]:
    """Consecutive lists of at most ``max_items`` items and (one item aside) ``max_size`` of ``size(item)``."""
    chunk: list[T] = []
    total = 0
    for item in items:
        weight = size(item) if size is not None else 0
        if chunk and (len(chunk) >= max_items or (max_size is not None and total + weight > max_size)):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += weight
    if chunk:
        yield chunk


class Counted(Generic[B]):
    """Batches passed through as they are produced, their items counted: ``tick(seen)`` after each one (progress,
    and a checkpoint between batches: a run whose lock is gone stops before reading the next)."""

    def __init__(self, batches: Iterable[B], tick: Callable[[int], None]) -> None:
        self.batches, self.tick, self.seen = batches, tick, 0

    def __iter__(self) -> Iterator[B]:
        for batch in self.batches:
            self.seen += len(batch)
            self.tick(self.seen)
            yield batch


def run_bounded(units: Iterable[T], work: Callable[[T], int], *, in_flight: int, name: str,
                on_done: Callable[[int], None] | None = None) -> int:
    """Apply ``work`` to every unit, at most ``in_flight`` at once; return the sum of its results."""
    done = 0
    pending: deque[Future[int]] = deque()
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix=name) as pool:
        try:
            for unit in units:  # producing this unit overlapped the writes in flight
                while len(pending) >= in_flight:
                    done += pending.popleft().result()
                    if on_done:
                        on_done(done)
                # each unit runs in a copy of this context: its log lines carry the run's run_id
                pending.append(pool.submit(contextvars.copy_context().run, work, unit))
            while pending:
                done += pending.popleft().result()
                if on_done:
                    on_done(done)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return done


_END = object()


def ahead(items: Iterable[T], *, depth: int = 20, batch: int = 500, name: str = "kfm-ahead") -> Iterator[T]:
    """``items``, produced by a thread of their own up to ``depth`` batches ahead of the consumer: in a merge of
    two streams, reading one store overlaps reading the other. The producer's error is raised here; a consumer
    that stops early stops the producer at its next batch."""
    handed: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand(entry: object) -> bool:
        while not stop.is_set():
            try:
                handed.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    source = iter(items)

    def produce() -> None:
        try:
            for chunk in chunks(source, batch):
                if not hand(chunk):
                    return
            hand(_END)
        except BaseException as exc:  # noqa: BLE001 — handed over: raised in the consumer
            hand(exc)
        finally:  # a generator left early is closed here, in its own thread (a server-side cursor, say)
            close = getattr(source, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=contextvars.copy_context().run, args=(produce,), name=name, daemon=True)
    producer.start()
    try:
        while True:
            entry = handed.get()
            if entry is _END:
                return
            if isinstance(entry, BaseException):
                raise entry
            yield from cast(list[T], entry)
    finally:
        stop.set()
        producer.join()
