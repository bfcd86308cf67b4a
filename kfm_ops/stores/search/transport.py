"""opensearch-py transports: the search store's error boundary, its deadline and its read-only guard."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import orjson
from opensearchpy import ConnectionTimeout, Transport
from opensearchpy.serializer import JSONSerializer

from kfm_ops.errors import ActionRefused, Interrupted, KfmError
from kfm_ops.faults import translate
from kfm_ops.interrupt import STOP

# opensearch-py logs every failed request with its traceback at WARNING; kfm-ops reports
# failures itself (service, fault class, hint), so only the client's errors are let through.
logging.getLogger("opensearch").setLevel(logging.ERROR)

# Requests a read client may send besides GET/HEAD: searching, counting, the point-in-time /
# scroll bookkeeping that streamed reads need, and the allocation explanation (a POST that reads).
_READ_POSTS = re.compile(r"/(_search|_count|_msearch|_mget|_validate/query|_search/point_in_time|_search/scroll"
                         r"|_cluster/allocation/explain)$")
_READ_DELETES = re.compile(r"/(_search/point_in_time|_search/scroll)(/.*)?$")


class FastJSONSerializer(JSONSerializer):
    """Answers parsed by orjson: streamed reads (digests, merges) parse a million hits per million items."""

    def loads(self, s: str) -> Any:
        return orjson.loads(s)


class DeadlineTransport(Transport):
    """A transport whose every request completes within ``deadline`` seconds, or fails.

    Socket timeouts bound each read, not the whole answer: a link that trickles a byte
    now and then would keep a request alive for ever. The request runs in a daemon
    thread; past the deadline it is abandoned (the process can still exit) and a
    timeout is raised. Every driver error leaves as a ServiceError (the store's boundary).
    """

    deadline: float = 30.0
    boundary: tuple[str, str] = ("search", "?")  # (service, host:port), set by the store

    def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._within_deadline(method, url, *args, **kwargs)
        except KfmError:
            raise
        except Exception as exc:
            raise translate(exc, *self.boundary) from exc

    def _within_deadline(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if STOP.is_set():
            raise Interrupted("interrupted before the request was sent")
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["result"] = Transport.perform_request(self, method, url, *args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 — handed to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=work, name="kfm-search-request", daemon=True)
        worker.start()
        deadline = time.monotonic() + self.deadline
        while worker.is_alive() and time.monotonic() < deadline and not STOP.is_set():
            worker.join(0.1)
        if worker.is_alive() and STOP.is_set():
            raise Interrupted("interrupted while waiting for an answer")
        if worker.is_alive():
            raise ConnectionTimeout("TIMEOUT", f"no complete answer to {method} {url} within {self.deadline}s", None)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]


class ReadOnlyTransport(DeadlineTransport):
    """A transport that refuses writes before they leave the process."""

    def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        path = url.split("?", 1)[0]
        if not (
            method in ("GET", "HEAD")
            or (method == "POST" and _READ_POSTS.search(path))
            or (method == "DELETE" and _READ_DELETES.search(path))
        ):
            raise ActionRefused(
                f"the search client of a check session is read-only: {method} {path} refused",
                hint="writes to the search index go through kfm-maint actions",
            )
        return super().perform_request(method, url, *args, **kwargs)
