"""The bulk loader: documents (already JSON text) into one index, bounded, with push-back handling.

A chunk closes at ``batch_size`` documents or ``BULK_BYTES`` of body, whichever comes
first; ``in_flight`` requests at once keep the cluster's write threads busy while the
next chunk is read from PostGIS (:func:`kfm_ops.pipeline.run_bounded`). Documents the
cluster pushes back (429, per document or the whole request) are sent again with
exponential backoff and jitter; any other rejection fails the load naming the document.

Every request goes through the index's writing alias with ``require_alias``: the alias is
deleted with its index, so a request that reaches the cluster after that (a killed run's,
held up on the network) fails there instead of making a fresh index of that name, mapped by
guess — which a cluster that auto-creates indices would do for a plain index name.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring_ascii as quoted  # the C string quoter: ~6× json.dumps

from opensearchpy import OpenSearch

from kfm_ops import log
from kfm_ops.errors import ActionFailed, Interrupted, ServiceError
from kfm_ops.faults import THROTTLED
from kfm_ops.interrupt import STOP
from kfm_ops.pipeline import chunks, run_bounded
from kfm_ops.redact import clip

# While the index is built nobody reads it and a crash discards it anyway: no refreshes, and
# the translog fsynced every few seconds instead of per bulk request. Both are restored (and
# the index flushed) before the verify.
BUILD_SETTINGS = {"refresh_interval": "-1", "translog.durability": "async", "translog.sync_interval": "30s"}
# Documents pushed back (429) are sent again after 0.5, 1, 2, 4, 8, 10 s, each shortened by a
# random part of up to half (the writers in flight must not come back in step): the cluster is
# called overloaded after 7 attempts and at most ~25 s of pauses.
BULK_ATTEMPTS = 7
BULK_BACKOFF = 0.5
BULK_BACKOFF_MAX = 10.0
BULK_DOCS = 5000
BULK_BYTES = 10 * 1024 * 1024
BULK_IN_FLIGHT = 3
BULK_ANSWER = "items.*.status,items.*.error"

Document = tuple[str, str | None]  # (id, JSON text); no JSON: delete the document


def writing_alias(index: str) -> str:
    """The alias kfm-ops writes ``index`` through (see the module's docstring)."""
    return f"kfm-ops-write.{index}"


class BulkLoader:
    """Loads documents into ``index``; ``action`` names the run in failures."""

    def __init__(self, client: OpenSearch, index: str, *, action: str, batch_size: int = BULK_DOCS,
                 in_flight: int = BULK_IN_FLIGHT) -> None:
        self.client = client
        self.index = index
        self.action = action
        self.batch_size = batch_size
        self.in_flight = in_flight
        self._through: str | None = None

    def load(self, documents: Iterable[Document], on_done: Callable[[int], None] | None = None) -> int:
        """Send every document; return how many were loaded."""
        if self._through is None:
            # once per loader, and idempotent (partition workers share an index): an alias is only ever
            # added to an index that exists, so a vanished one fails here, naming it
            try:
                self.client.indices.put_alias(index=self.index, name=writing_alias(self.index))
            except ServiceError as exc:
                raise self._gone() if exc.status == 404 else exc from None
            self._through = writing_alias(self.index)
        return run_bounded(chunks(documents, self.batch_size, BULK_BYTES, size=lambda d: len(d[1] or "")),
                           self._send, in_flight=self.in_flight, name="kfm-bulk", on_done=on_done)

    def delete(self, ids: Iterable[str]) -> int:
        """Delete the documents ``ids`` (one already gone counts as deleted); return how many were asked for."""
        return self.load((item_id, None) for item_id in ids)

    def _send(self, chunk: list[Document]) -> int:
        """One bulk request; documents the cluster pushed back (429) are sent again, with backoff."""
        pending = chunk
        for attempt in range(BULK_ATTEMPTS):
            if attempt:  # exponential, with jitter so the writers in flight do not come back in step
                pause = min(BULK_BACKOFF_MAX, BULK_BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311
                log.get_logger().info("bulk.pushed_back", index=self.index, documents=len(pending), attempt=attempt,
                                      pause_s=round(pause, 2))
                if STOP.wait(pause):
                    raise Interrupted("interrupted by SIGTERM during step 'bulk'")
            pending = self._request(pending)
            if not pending:
                return len(chunk)
        raise ActionFailed(self.action, "bulk", f"{len(pending)} documents still pushed back (429) after "
                           f"{BULK_ATTEMPTS} attempts", hint="the cluster is overloaded; re-run later")

    def _request(self, pending: list[Document]) -> list[Document]:
        """Send ``pending`` in one bulk request; return the documents pushed back (429)."""
        # the documents are JSON text already: the body is assembled, never re-serialized
        body = "".join(f'{{"index":{{"_id":{quoted(item_id)}}}}}\n{doc}\n' if doc is not None
                       else f'{{"delete":{{"_id":{quoted(item_id)}}}}}\n' for item_id, doc in pending)
        try:
            # per document only its status (and error): the full answer is ~10x the bytes to build and parse
            items = self.client.bulk(index=self._through, body=body,
                                     params={"filter_path": BULK_ANSWER, "require_alias": "true"})["items"]
        except ServiceError as exc:
            if exc.fault == THROTTLED:  # the whole request refused (the transport's quick retries were not enough)
                return pending
            raise
        outcomes = [(doc, item.get("index") or item["delete"]) for doc, item in zip(pending, items, strict=True)]
        # a delete's 404 without an error is a document already gone; with one, the index is gone
        failed = [(doc[0], o) for doc, o in outcomes if o["status"] >= 300 and o["status"] != 429
                  and not (doc[1] is None and o["status"] == 404 and "error" not in o)]
        if any((o.get("error") or {}).get("type") == "index_not_found_exception" for _, o in failed):
            raise self._gone()
        if failed:
            raise ActionFailed(self.action, "bulk", f"{len(failed)} documents rejected, first: "
                               f"{failed[0][0]}: {clip(str(failed[0][1].get('error')), 300)}")
        return [doc for doc, o in outcomes if o["status"] == 429]

    def _gone(self) -> ActionFailed:
        return ActionFailed(self.action, "bulk", f"search index {self.index} is gone: it was deleted while this "
                            "run was writing to it", hint="re-run: the next run plans again from the indices there are")
