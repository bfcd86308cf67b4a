"""Cross-store comparison of (id, content_hash) streams, memory-bounded at any size.

Every store yields its published items as id-ordered ``(id, content_hash)`` pairs:
PostGIS through a server-side cursor, OpenSearch through point-in-time +
``search_after``, Neo4j through keyset pages on the uniquely-constrained id.
:func:`compare` walks two such streams in one sorted merge, keeping only counts
and the first N ids of each kind — never a whole id set.
:mod:`kfm_ops.digest` puts an order-free digest in front of the merge for search.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from kfm_ops.clients.postgis import stream

Pair = tuple[str, str]

PUBLISHED_ITEMS_SQL = (
    "SELECT i.id, i.content_hash FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id "
    "WHERE d.status = 'published' ORDER BY i.id COLLATE \"C\""
)

@dataclass
class Diff:
    """How a derived store differs from the canonical one."""

    store: str
    first_n: int = 10
    compared: int = 0
    missing: int = 0  # in canonical, not in the store
    orphaned: int = 0  # in the store, not in canonical
    stale: int = 0  # in both, content_hash differs
    missing_ids: list[str] = field(default_factory=list)
    orphaned_ids: list[str] = field(default_factory=list)
    stale_ids: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.orphaned or self.stale)

    def _note(self, kind: str, item_id: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        ids: list[str] = getattr(self, f"{kind}_ids")
        if len(ids) < self.first_n:
            ids.append(item_id)

    def summary(self) -> str:
        parts = []
        for kind in ("missing", "orphaned", "stale"):
            count = getattr(self, kind)
            if count:
                parts.append(f"{count} {kind} (first: {', '.join(getattr(self, kind + '_ids'))})")
        return f"{self.store}: " + ("; ".join(parts) if parts else f"{self.compared} items consistent")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "first_n"}


def compare(canonical: Iterator[Pair], derived: Iterator[Pair], *, store: str, first_n: int = 10,
            on_orphan: Callable[[str], None] | None = None) -> Diff:
    """Sorted merge of two id-ordered streams (byte order of the ids).

    ``on_orphan`` sees every orphaned id as the merge passes it (e.g. to delete in batches).
    """
    diff = Diff(store=store, first_n=first_n)
    sentinel = None
    a = next(canonical, sentinel)
    b = next(derived, sentinel)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            diff._note("missing", a[0])  # type: ignore[index]
            a = next(canonical, sentinel)
        elif a is None or b[0] < a[0]:
            diff._note("orphaned", b[0])
            if on_orphan is not None:
                on_orphan(b[0])
            b = next(derived, sentinel)
        else:
            diff.compared += 1
            if a[1] != b[1]:
                diff._note("stale", a[0])
            a = next(canonical, sentinel)
            b = next(derived, sentinel)
    return diff


def canonical_pairs(conn: psycopg.Connection, *, batch: int = 10_000) -> Iterator[Pair]:
    """Published items of the canonical store, id-ordered, via a server-side cursor."""
    for row in stream(conn, PUBLISHED_ITEMS_SQL, batch=batch):
        yield row[0], row[1]


def pit_pairs(client: Any, pit: str, *, sort: list[Any], after: list[Any] | None = None, batch: int = 10_000,
              keep_alive: str = "2m") -> Iterator[tuple[Any, Pair]]:
    """(sort value, pair) of every document of a point in time past ``after``, from doc values, page by page."""
    while True:
        body: dict[str, Any] = {
            "size": batch,
            "stored_fields": "_none_",  # doc values only: no stored field (not even _id) is loaded
            "docvalue_fields": ["id", "content_hash"],
            "sort": sort,
            "pit": {"id": pit, "keep_alive": keep_alive},
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        found = client.search(body=body, params={"filter_path": "hits.hits.fields,hits.hits.sort"})
        hits = found.get("hits", {}).get("hits", [])
        if not hits:
            return
        for hit in hits:
            fields = hit.get("fields", {})
            yield hit["sort"][0], ((fields.get("id") or [""])[0], (fields.get("content_hash") or [""])[0])
        after = hits[-1]["sort"]


ID_ORDER = [{"id": "asc"}]


def search_pairs(client: Any, index: str, *, batch: int = 10_000, keep_alive: str = "2m") -> Iterator[Pair]:
    """Documents of ``index``, id-ordered, via point-in-time + search_after."""
    pit = client.create_pit(index=index, params={"keep_alive": keep_alive})["pit_id"]
    try:
        for _, pair in pit_pairs(client, pit, sort=ID_ORDER, batch=batch, keep_alive=keep_alive):
            yield pair
    finally:
        client.delete_pit(body={"pit_id": [pit]})


def graph_pairs(handle: Any, *, batch: int = 10_000) -> Iterator[Pair]:
    """Item nodes, id-ordered, in keyset pages on the constrained id."""
    after = ""
    while True:
        rows = handle.run(
            "MATCH (i:Item) WHERE i.id > $after RETURN i.id AS id, i.content_hash AS h ORDER BY i.id LIMIT $n",
            after=after, n=batch,
        )
        if not rows:
            return
        for row in rows:
            yield row["id"], row["h"] or ""
        after = rows[-1]["id"]
