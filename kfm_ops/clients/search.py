"""OpenSearch via opensearch-py. Read clients refuse every request that could write."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import orjson
from opensearchpy import ConnectionError as OpenSearchConnectionError
from opensearchpy import ConnectionTimeout, OpenSearch, Transport
from opensearchpy.serializer import JSONSerializer

from kfm_ops.errors import ActionRefused
from kfm_ops.interrupt import STOP
from kfm_ops.settings import SearchSettings

# opensearch-py logs every failed request with its traceback at WARNING; kfm-ops reports
# failures itself (service, fault class, hint), so only the client's errors are let through.
logging.getLogger("opensearch").setLevel(logging.ERROR)

# Requests a read client may send besides GET/HEAD: searching, counting and the
# point-in-time / scroll bookkeeping that streamed reads need.
_READ_POSTS = re.compile(r"/(_search|_count|_msearch|_mget|_validate/query|_search/point_in_time|_search/scroll)$")
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
    timeout is raised.
    """

    deadline: float = 30.0

    def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if STOP.is_set():
            raise OpenSearchConnectionError("N/A", "interrupted before the request was sent", None)
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
            raise OpenSearchConnectionError("N/A", "interrupted while waiting for an answer", None)
        if worker.is_alive():
            raise ConnectionTimeout("TIMEOUT", f"no complete answer to {method} {url} within {self.deadline}s "
                                    "(timeout)", None)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]


class ReadOnlyTransport(DeadlineTransport):
    """A transport that refuses writes before they leave the process."""

    def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
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


def open(section: SearchSettings, *, write: bool) -> OpenSearch:  # noqa: A001
    auth = (section.username, section.password.get_secret_value()) if section.username and section.password else None
    client = OpenSearch(
        hosts=[section.url],
        http_auth=auth,
        verify_certs=section.verify_certs,
        timeout=section.query_timeout,
        # Writers retry what OpenSearch says is temporary: 429 (bulk queue full) and 502/503/504.
        max_retries=3 if write else 0,
        retry_on_status=(429, 502, 503, 504),
        retry_on_timeout=write,
        transport_class=DeadlineTransport if write else ReadOnlyTransport,
        serializer=FastJSONSerializer(),
    )
    client.transport.deadline = section.query_timeout  # type: ignore[attr-defined]
    return client


def ping(client: OpenSearch) -> None:
    client.info()


def version(client: OpenSearch) -> str:
    info = client.info()
    return f"{info['version'].get('distribution', 'opensearch')} {info['version']['number']}"


def close(client: OpenSearch) -> None:
    client.close()
