"""One bounded loader for the derived stores: search bulk requests and graph upsert batches.

The caller's iterator produces the next unit (reading PostGIS) while at most
``in_flight`` units are being written. The first failure, or SIGTERM, stops it:
queued units never start and running ones end within their own deadline.
(Not ``opensearchpy.helpers.parallel_bulk``: its pool deadlocks when the consumer
stops early while the bounded task queue is full, so an interrupted run never exits.)
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Unit = TypeVar("Unit")


def run_bounded(units: Iterable[Unit], work: Callable[[Unit], int], *, in_flight: int, name: str,
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
