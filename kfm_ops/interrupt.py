"""Cooperative interruption: SIGTERM asks work in other threads to stop at its next safe point.

The action runner sets :data:`STOP` when SIGTERM arrives (and raises in the main thread);
worker threads — bulk requests in flight, queued bulk chunks — see it and give up at once
instead of finishing their queue.
"""

import threading

STOP = threading.Event()
