"""Slices of a catalog: bucket partitions of a run, and id ranges of the content checks' scrub.

A :class:`Partition` is a contiguous range of the 4,096 buckets every record is hashed into.

Partition ``i/N`` (``0 <= i < N``, as a Kubernetes Indexed Job numbers its completions) holds the
buckets ``[i * 4096 // N, (i + 1) * 4096 // N)`` of :mod:`kfm_ops.buckets`: the first 12 bits of
``md5(id)``, so every id is in exactly one partition and the partitions are near-equal in size
whatever the ids look like. Partition 0 also holds bucket -1 (derived records written before the
bucket fields existed). Digests of partitions combine: the bucket digests are per bucket, and the
rebuild's order-free digest is a sum (:meth:`kfm_ops.digest.Digest.combine`).

An :class:`IdRange` is the ids between two boundaries in byte order: every engine reads it from
an index it has anyway (PostgreSQL's primary key, OpenSearch's ``id`` keyword, Neo4j's Item id
index), where a bucket range costs PostgreSQL an md5 of every id. Both speak the same few
methods (:class:`Slice`), so a derive query, an OpenSearch query and a Cypher match take either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kfm_ops.buckets import BUCKET_SQL, BUCKETS, Digests
from kfm_ops.errors import UsageError

_FORM = re.compile(r"\s*(\d{1,4})\s*/\s*(\d{1,4})\s*")


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Partition:
        """``"i/N"`` → Partition; anything else is a usage error naming the value."""
        match = _FORM.fullmatch(text)
        if not match:
            raise UsageError(f"--partition {text!r} is not of the form i/N",
                             hint="i/N with 0 <= i < N, e.g. 0/2 and 1/2 (i is a Kubernetes completion index)")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= count <= BUCKETS or not 0 <= index < count:
            raise UsageError(f"--partition {text!r}: need 0 <= i < N <= {BUCKETS}",
                             hint=f"N partitions are numbered 0..N-1; at most {BUCKETS} (one bucket each)")
        return cls(index, count)

    @classmethod
    def whole(cls) -> Partition:
        return cls(0, 1)

    @property
    def first(self) -> int:
        return self.index * BUCKETS // self.count

    @property
    def end(self) -> int:
        """One past the last bucket."""
        return (self.index + 1) * BUCKETS // self.count

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, bucket: int) -> bool:
        return self.first <= bucket < self.end or (bucket == -1 and self.index == 0)

    def only(self, digests: Digests) -> Digests:
        """The part of ``digests`` in this partition."""
        return {b: v for b, v in digests.items() if self.holds(b)}

    def within(self, where: str, what: str = "partition") -> str:
        """Where a comparison of this partition looked: ``where``, and its bucket range."""
        if self.count == 1:
            return where
        return f"{where}, {what} {self.label} (buckets {self.first}-{self.end - 1})"

    def search_query(self) -> dict[str, object] | None:
        """An OpenSearch query for the documents in this partition (by their ``sync_bucket``), None for the whole."""
        if self.count == 1:
            return None
        ranged: dict[str, object] = {"range": {"sync_bucket": {"gte": self.first, "lt": self.end}}}
        if self.index != 0:
            return ranged
        return {"bool": {"should": [ranged, {"bool": {"must_not": {"exists": {"field": "sync_bucket"}}}}],
                         "minimum_should_match": 1}}

    def cypher(self, node: str = "i") -> str:
        """A Cypher condition: the node is in this partition (by its ``sync_bucket``)."""
        if self.count == 1:
            return "true"
        held = f"({node}.sync_bucket >= {self.first} AND {node}.sync_bucket < {self.end})"
        return f"({held} OR {node}.sync_bucket IS NULL)" if self.index == 0 else held

    def where(self, id_column: str = "id") -> str:
        """A SQL condition: the row of ``id_column`` is in this partition (always true for the whole)."""
        if self.count == 1:
            return "true"
        return f"{BUCKET_SQL.format(id=id_column)} BETWEEN {self.first} AND {self.end - 1}"

    def params(self) -> dict[str, str]:
        """The parameters :meth:`where` and :meth:`cypher` refer to: none, the bucket numbers are in the text."""
        return {}


class Slice(Protocol):
    """What a derive query, an OpenSearch query and a Cypher match need to read part of the catalog."""

    @property
    def count(self) -> int: ...
    @property
    def label(self) -> str: ...
    def within(self, where: str, what: str = ...) -> str: ...
    def where(self, id_column: str = ...) -> str: ...
    def params(self) -> dict[str, str]: ...
    def search_query(self) -> dict[str, object] | None: ...
    def cypher(self, node: str = ...) -> str: ...


@dataclass(frozen=True)
class IdRange:
    """Slice ``index`` of ``count``: the ids from ``low`` (included) to ``high`` (excluded) in byte order; None is
    open-ended. Compared in byte order everywhere, as every id-ordered merge of kfm-ops is: in PostgreSQL
    ``COLLATE "C"``, unless ``collated`` says the id column sorts that way already (then its primary key
    finds the range; a C collation does, an en_US one does not)."""

    index: int
    count: int
    low: str | None
    high: str | None
    collated: bool = False

    @classmethod
    def of(cls, sample: Sequence[str], index: int, count: int, *, collated: bool = False) -> IdRange:
        """Range ``index`` of ``count`` near-equal ranges, its boundaries the quantiles of ``sample`` (some ids
        of the catalog): range 0 starts open, range count-1 ends open, so the ranges cover every id there is."""
        ordered = sorted(set(sample))  # str order is code point order: the byte order of UTF-8

        def boundary(k: int) -> str | None:
            return ordered[k * len(ordered) // count] if 0 < k < count and ordered else None

        return cls(index, count, boundary(index), boundary(index + 1), collated)

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, item_id: str) -> bool:
        return (self.low is None or item_id >= self.low) and (self.high is None or item_id < self.high)

    def within(self, where: str, what: str = "slice") -> str:
        return f"{where}, {what} {self.label} (ids {self.low or '(first)'} to {self.high or '(last)'})"

    def where(self, id_column: str = "id") -> str:
        """A SQL condition on ``id_column``, with the parameters of :meth:`params`."""
        column = id_column if self.collated else f'{id_column} COLLATE "C"'
        found = [f"{column} >= %(slice_low)s"] if self.low is not None else []
        found += [f"{column} < %(slice_high)s"] if self.high is not None else []
        return " AND ".join(found) or "true"

    def params(self) -> dict[str, str]:
        return {k: v for k, v in (("slice_low", self.low), ("slice_high", self.high)) if v is not None}

    def search_query(self) -> dict[str, object] | None:
        bounds = {k: v for k, v in (("gte", self.low), ("lt", self.high)) if v is not None}
        return {"range": {"id": bounds}} if bounds else None

    def cypher(self, node: str = "i") -> str:
        """A Cypher condition on the node's id, with the parameters of :meth:`params`."""
        found = [f"{node}.id >= $slice_low"] if self.low is not None else []
        found += [f"{node}.id < $slice_high"] if self.high is not None else []
        return " AND ".join(found) or "true"
