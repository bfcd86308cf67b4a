"""Cooperative interruption: SIGTERM asks work in other threads to stop at its next safe point.

The action runner sets :data:`STOP` when SIGTERM arrives (and raises in the main thread);
worker threads — bulk requests in flight, queued bulk chunks, a store's sync in a thread of
its own (:func:`stoppable`) — see it and give up at once instead of finishing their queue.
"""

import threading
from collections.abc import Callable

from kfm_ops.errors import Interrupted

STOP = threading.Event()


def interrupted(message: str = "interrupted by SIGTERM") -> Interrupted:
    """What a stopped action raises: its live state was left as it was (every step keeps it readable)."""
    return Interrupted(message, hint="the live state was left as it was; re-run to converge")


def stoppable(checkpoint: Callable[[], None]) -> Callable[[], None]:
    """``checkpoint`` for work in another thread (SIGTERM raises only in the main thread): it stops there too."""
    def check() -> None:
        if STOP.is_set():
            raise interrupted()
        checkpoint()
    return check
