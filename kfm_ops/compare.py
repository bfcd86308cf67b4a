"""Comparing two id-ordered (id, content_hash) streams in one sorted merge, memory-bounded at any size.

Every store yields its published items as id-ordered pairs (PostGIS through a
server-side cursor, OpenSearch through point-in-time + ``search_after``, Neo4j through
keyset pages on the uniquely-constrained id). :func:`compare` walks two such streams,
keeping only counts and the first N ids of each kind — never a whole id set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Pair = tuple[str, str]


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

    @property
    def total(self) -> int:
        return self.missing + self.orphaned + self.stale

    def note(self, kind: str, item_id: str) -> None:
        """Count one ``kind`` (missing, orphaned, stale) difference; keep the first N ids."""
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
            on_diff: Callable[[str, str], None] | None = None) -> Diff:
    """Sorted merge of two id-ordered streams (byte order of the ids).

    ``on_diff(kind, id)`` sees every difference as the merge passes it (kind: missing, orphaned,
    stale) — to delete orphans in batches, or to date each difference.
    """
    diff = Diff(store=store, first_n=first_n)
    a = next(canonical, None)
    b = next(derived, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            kind, item_id = "missing", a[0]
            a = next(canonical, None)
        elif a is None or b[0] < a[0]:
            kind, item_id = "orphaned", b[0]
            b = next(derived, None)
        else:
            diff.compared += 1
            kind, item_id = ("stale" if a[1] != b[1] else ""), a[0]
            a = next(canonical, None)
            b = next(derived, None)
            if not kind:
                continue
        diff.note(kind, item_id)
        if on_diff is not None:
            on_diff(kind, item_id)
    return diff
