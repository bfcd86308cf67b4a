"""``kfm-maint reindex --targets search`` (blue/green) and ``kfm-maint reindex rollback``.

build a new versioned index → stream + bulk-load → catch up from the watermark →
refresh → verify against the canonical set → swap the alias in one ``_aliases``
call → prune. Until the swap nothing that readers use is touched; a failure at any
step deletes only the half-built index and names the step. Each index carries its
state in ``_meta.kfm`` (building → verified), so rollback only ever goes back to a
verified index and prune clears what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from json.encoder import encode_basestring_ascii as quoted  # the C string quoter: ~6× json.dumps
from typing import Any

from opensearchpy import OpenSearch, TransportError

from kfm_ops import contracts, log
from kfm_ops.clients import describe, service_of
from kfm_ops.digest import search_matches
from kfm_ops.errors import ActionFailed
from kfm_ops.hub import ServiceHub
from kfm_ops.interrupt import STOP
from maintenance.actions.derive import (
    grid_degrees,
    published_count,
    record_watermark,
    run_id_of,
    stream_documents,
)
from maintenance.actions.pipeline import run_bounded
from maintenance.runner import Interrupted, Plan

CATCH_UP_MARGIN = timedelta(minutes=5)  # covers writers whose transactions began before our snapshot
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
# Bulk request shape: a chunk closes at BULK_DOCS documents or BULK_BYTES of body, whichever
# comes first (large geometries must not make 100 MB requests); BULK_IN_FLIGHT requests at
# once keep the cluster's write threads busy while the next chunk is read from PostGIS.
BULK_DOCS = 5000
BULK_BYTES = 10 * 1024 * 1024
BULK_IN_FLIGHT = 3
BULK_ANSWER = "items.*.status,items.*.error"


def _contract(hub: ServiceHub) -> dict[str, Any]:
    return contracts.load("search", hub.settings.contracts_dir)


@dataclass
class SearchState:
    """The versioned indices of the search contract, as plan, rollback and prune see them."""

    alias: str
    prefix: str
    live: list[str]  # the indices the alias points at now
    metas: dict[str, dict[str, Any]]  # every versioned index -> its _meta.kfm

    def version(self, name: str) -> int:
        match = re.fullmatch(re.escape(self.prefix) + r"(\d+)", name)
        return int(match.group(1)) if match else -1

    @property
    def next_index(self) -> str:
        return f"{self.prefix}{max([0, *map(self.version, self.metas)]) + 1:04d}"

    def verified(self) -> list[str]:
        """Verified (or live) indices, newest first."""
        return sorted((n for n, m in self.metas.items() if m.get("state") == "verified" or n in self.live),
                      key=self.version, reverse=True)


def search_state(client: OpenSearch, contract: dict[str, Any]) -> SearchState:
    alias, prefix = contract["alias"], contract["index_prefix"]
    live = sorted(client.indices.get_alias(name=alias)) if client.indices.exists_alias(name=alias) else []
    found = client.indices.get(index=f"{prefix}*", ignore_unavailable=True, allow_no_indices=True)
    metas = {name: (body.get("mappings", {}).get("_meta") or {}).get("kfm", {}) for name, body in found.items()}
    return SearchState(alias, prefix, live, metas)


class ReindexSearch:
    name = "reindex-search"
    stores = ("search",)
    verify_markers = "search"

    def __init__(self, *, keep: int = 2, force: bool = False, batch_size: int = BULK_DOCS,
                 threads: int = BULK_IN_FLIGHT) -> None:
        self.keep = keep
        self.force = force
        self.batch_size = batch_size
        self.threads = threads

    def plan(self, hub: ServiceHub) -> Plan:
        contract = _contract(hub)
        client = hub.client("search")
        state = search_state(client, contract)
        alias, live, new_index = state.alias, state.live, state.next_index
        count, newest = published_count(hub.client("postgis"))
        up_to_date = False
        if len(live) == 1 and not self.force:
            # Idempotence: a live index with the contract mapping and the canonical content is left alone.
            mapping = client.indices.get_mapping(index=live[0])[live[0]]["mappings"]
            same_mapping = {k: v for k, v in mapping.items() if k != "_meta"} == contract["mappings"]
            up_to_date = same_mapping and search_matches(hub.client("postgis"), client, alias, store="search").clean
        where = hub.settings.search.where if hub.settings.search else "?"
        return Plan(
            what=f"nothing to do: {alias} is current (use --force to rebuild)" if up_to_date
            else f"build {new_index} from {count} published items, verify, swap alias {alias}",
            where=[f"search {where}: alias {alias} (now → {', '.join(live) or 'nothing'})"],
            how_much={"documents": count, "live_index": ",".join(live) or None,
                      "existing_indices": len(state.metas)},
            rollback=f"`kfm-maint reindex rollback` points {alias} back at {live[0] if live else 'nothing'}",
            steps=[] if up_to_date else [
                f"create {new_index} (contract mapping, refresh off)", "stream + bulk-load published items",
                "catch up writes since the scan watermark", "refresh and verify count + content hashes",
                f"swap alias {alias} atomically", f"prune to the newest {self.keep} verified indices"],
            details={"alias": alias, "new_index": new_index, "live": live,
                     "nothing_to_do": up_to_date,
                     "newest_update": newest.isoformat() if newest else None},
        )

    def apply(self, hub: ServiceHub, plan: Plan, progress: Callable[[str, int, int | None], None]) -> dict[str, Any]:
        d = plan.details
        if plan.nothing_to_do:
            return {"index": d["live"][0], "documents_loaded": 0, "unchanged": True}
        client: OpenSearch = hub.writer("search")
        reader = hub.client("postgis")
        control = hub.writer("postgis")
        run_id = run_id_of(control)
        contract = _contract(hub)
        grid = grid_degrees(hub)
        new = d["new_index"]
        step = "create"
        try:
            body = {"settings": {**contract["settings"], **BUILD_SETTINGS},
                    "mappings": {**contract["mappings"], "_meta": {"kfm": {"state": "building", "run_id": run_id}}}}
            client.indices.create(index=new, body=body)
            step = "bulk"
            total, watermark = published_count(reader)
            scan_start = reader.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
            loaded = self._bulk(client, new, stream_documents(reader, grid), progress, total)
            step = "catch-up"
            caught_up = self._bulk(client, new, stream_documents(reader, grid, since=scan_start - CATCH_UP_MARGIN),
                                   progress, None)
            step = "refresh"
            client.indices.put_settings(index=new, body={"index": {
                "refresh_interval": contract["settings"]["refresh_interval"], "translog.durability": "request"}})
            client.indices.flush(index=new)
            client.indices.refresh(index=new)
            step = "verify"
            diff = search_matches(reader, client, new, store=f"search index {new}",
                                  first_n=hub.settings.checks.first_n)
            if not diff.clean:
                raise ActionFailed(self.name, "verify", diff.summary(),
                                   hint="the live alias was not touched; re-run when the canonical store is quiet")
            client.indices.put_mapping(index=new, body={"_meta": {"kfm": {"state": "verified", "run_id": run_id}}})
            step = "swap"
            point_alias(client, d["alias"], d["live"], new)
        except Interrupted:
            STOP.clear()  # the bulk workers have stopped; the clean-up request itself must go out
            self._discard(client, new)
            raise Interrupted(f"interrupted by SIGTERM during step '{step}'",
                              hint=f"alias {d['alias']} and its live index were left untouched") from None
        except ActionFailed:
            self._discard(client, new)
            raise
        except Exception as exc:  # noqa: BLE001 — any failure: discard the half-built index, name the step
            self._discard(client, new)
            raise ActionFailed(self.name, step, f"{service_of(exc) or 'search'} failed: {describe(exc)}",
                               hint=f"alias {d['alias']} and its live index were left untouched") from None
        record_watermark(control, "search", watermark, run_id)
        pruned = prune(client, search_state(client, contract), self.keep)
        return {"index": new, "documents_loaded": loaded, "caught_up": caught_up, "verified": diff.compared,
                "previous": ",".join(d["live"]) or None, "pruned": len(pruned)}

    def _bulk(self, client: OpenSearch, index: str, documents: Iterator[tuple[str, str]],
              progress: Callable[[str, int, int | None], None], total: int | None) -> int:
        loaded = run_bounded(chunks(documents, self.batch_size, BULK_BYTES),
                             lambda chunk: self._send(client, index, chunk), in_flight=self.threads,
                             name="kfm-bulk", on_done=lambda done: progress("search documents", done, total))
        progress("search documents", loaded, total)
        return loaded

    def _send(self, client: OpenSearch, index: str, chunk: list[tuple[str, str]]) -> int:
        """One bulk request; documents the cluster pushed back (429) are sent again, with backoff."""
        pending = chunk
        for attempt in range(BULK_ATTEMPTS):
            if attempt:  # exponential, with jitter so the writers in flight do not come back in step
                pause = min(BULK_BACKOFF_MAX, BULK_BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311
                log.get_logger().info("bulk.pushed_back", index=index, documents=len(pending), attempt=attempt,
                                      pause_s=round(pause, 2))
                if STOP.wait(pause):
                    raise Interrupted("interrupted by SIGTERM during step 'bulk'")
            pending = self._request(client, index, pending)
            if not pending:
                return len(chunk)
        raise ActionFailed(self.name, "bulk", f"{len(pending)} documents still pushed back (429) after "
                           f"{BULK_ATTEMPTS} attempts", hint="the cluster is overloaded; re-run later")

    def _request(self, client: OpenSearch, index: str, pending: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Send ``pending`` in one bulk request; return the documents pushed back (429)."""
        # the documents are JSON text already: the body is assembled, never re-serialized
        body = "".join(f'{{"index":{{"_id":{quoted(item_id)}}}}}\n{doc}\n' for item_id, doc in pending)
        try:
            # per document only its status (and error): the full answer is ~10x the bytes to build and parse
            items = client.bulk(index=index, body=body, params={"filter_path": BULK_ANSWER})["items"]
        except TransportError as exc:
            if exc.status_code == 429:  # the whole request refused (the transport's quick retries were not enough)
                return pending
            raise
        outcomes = [(pair, item["index"]) for pair, item in zip(pending, items, strict=True)]
        failed = [(pair[0], o) for pair, o in outcomes if o["status"] >= 300 and o["status"] != 429]
        if failed:
            raise ActionFailed(self.name, "bulk", f"{len(failed)} documents rejected, first: "
                               f"{failed[0][0]}: {str(failed[0][1].get('error'))[:300]}")
        return [pair for pair, o in outcomes if o["status"] == 429]

    @staticmethod
    def _discard(client: OpenSearch, index: str) -> None:
        with contextlib.suppress(Exception):  # prune removes it next time
            client.indices.delete(index=index, ignore_unavailable=True)


def chunks(documents: Iterator[tuple[str, str]], max_docs: int, max_bytes: int) -> Iterator[list[tuple[str, str]]]:
    """Consecutive chunks of at most ``max_docs`` documents and (one document aside) ``max_bytes`` of JSON."""
    chunk: list[tuple[str, str]] = []
    size = 0
    for item_id, doc in documents:
        if chunk and (len(chunk) >= max_docs or size + len(doc) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((item_id, doc))
        size += len(doc)
    if chunk:
        yield chunk


def point_alias(client: OpenSearch, alias: str, live: list[str], target: str) -> None:
    """Move ``alias`` from the ``live`` indices to ``target`` in one ``_aliases`` call: readers never see a gap."""
    actions: list[dict[str, Any]] = [{"remove": {"index": old, "alias": alias}} for old in live]
    client.indices.update_aliases(body={"actions": [*actions, {"add": {"index": target, "alias": alias}}]})


def prune(client: OpenSearch, state: SearchState, keep: int) -> list[str]:
    """Delete leftovers of killed runs and all but the newest ``keep`` verified indices."""
    keep_set = set(state.live) | set(state.verified()[:keep])
    doomed = sorted(n for n in state.metas if n not in keep_set)
    for name in doomed:
        client.indices.delete(index=name, ignore_unavailable=True)
    return doomed


class RollbackSearch:
    name = "reindex-rollback"
    stores = ("search",)
    verify_markers = ""  # the canonical store may have moved on since; rollback's own check is the alias

    def plan(self, hub: ServiceHub) -> Plan:
        state = search_state(hub.client("search"), _contract(hub))
        alias, live = state.alias, state.live
        current = max(map(state.version, live), default=-1)
        candidates = [n for n in state.verified() if n not in live and state.version(n) < current]
        if not candidates:
            raise ActionFailed(self.name, "plan", f"no verified index older than {', '.join(live) or 'nothing'}",
                               hint="nothing to roll back to; run `kfm-maint reindex --targets search`")
        target = candidates[0]  # the newest verified index older than the live one
        return Plan(what=f"point alias {alias} back at {target}", where=[f"search alias {alias}"],
                    how_much={"from": ",".join(live), "to": target},
                    rollback="`kfm-maint reindex --targets search` rebuilds a fresh index",
                    steps=[f"swap alias {alias} → {target} atomically"],
                    details={"alias": alias, "live": live, "target": target})

    def apply(self, hub: ServiceHub, plan: Plan, progress: Callable[[str, int, int | None], None]) -> dict[str, Any]:
        d = plan.details
        point_alias(hub.writer("search"), d["alias"], d["live"], d["target"])
        return {"alias": d["alias"], "now": d["target"], "was": ",".join(d["live"])}
