"""Bucket digests: finding what differs between the canonical store and a derived one, without moving it all.

Every record is in one of :data:`BUCKETS` buckets (from an md5 of its id) and carries a
fingerprint of (id, content_hash) as two 28-bit numbers (from an md5 of ``id|content_hash``).
Each engine sums them per bucket where the data is — PostgreSQL computes them from the
canonical rows (``md5`` in SQL), OpenSearch and Neo4j sum the values the derive step wrote into
each document and node (``sync_bucket``, ``sync_h1``, ``sync_h2``) — so only 4,096 small rows
cross the wire per side. Buckets whose (count, h1, h2) differ are then compared id by id
(:func:`kfm_ops.compare.compare`), which names the missing, orphaned and stale records: cost
proportional to the changes, not to the catalog. A deleted record needs no tombstone: its bucket
simply differs. (Anti-entropy, as Dynamo-style stores repair replicas.)

Sums stay exact everywhere: ≤ 2**25 records per bucket of 28-bit values fit the 53 bits an
OpenSearch ``sum`` keeps exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

BUCKETS = 4096
BUCKET_BITS = 12

# The SQL every engine's numbers come from: the derive step writes these into documents and nodes,
# and the canonical digests compute them the same way (the two must never disagree).
BUCKET_SQL = "('x' || substr(md5({id}), 1, 3))::bit(12)::int"
H1_SQL = "('x' || substr(md5({id} || '|' || {hash}), 1, 7))::bit(28)::int"
H2_SQL = "('x' || substr(md5({id} || '|' || {hash}), 8, 7))::bit(28)::int"

Digests = dict[int, tuple[int, int, int]]
"""bucket -> (count, sum of h1, sum of h2); a bucket with no record is absent."""


def fields(item_id: str, content_hash: str) -> tuple[int, int, int]:
    """(bucket, h1, h2) of one record, as the SQL above computes them (for tests and small inputs)."""
    bucket = int(hashlib.md5(item_id.encode()).hexdigest()[:3], 16)  # noqa: S324 — a bucket, not security
    pair = hashlib.md5(f"{item_id}|{content_hash}".encode()).hexdigest()  # noqa: S324
    return bucket, int(pair[:7], 16), int(pair[7:14], 16)


def of(pairs: Iterable[tuple[str, str]]) -> Digests:
    """The bucket digests of (id, content_hash) pairs, computed here."""
    found: dict[int, list[int]] = {}
    for item_id, content_hash in pairs:
        bucket, h1, h2 = fields(item_id, content_hash)
        entry = found.setdefault(bucket, [0, 0, 0])
        entry[0] += 1
        entry[1] += h1
        entry[2] += h2
    return {b: (n, h1, h2) for b, (n, h1, h2) in found.items()}


def differing(canonical: Digests, derived: Digests) -> list[int]:
    """The buckets whose records differ (a bucket on one side only differs too), in order."""
    return sorted(b for b in set(canonical) | set(derived) if canonical.get(b) != derived.get(b))


def total(digests: Digests) -> int:
    """How many records the digests cover."""
    return sum(n for n, _h1, _h2 in digests.values())
