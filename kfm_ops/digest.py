"""Order-free digests of (id, content_hash) sets: proving two stores equal without a sorted merge.

Per pair, each string is read as one number (its UTF-16 code units in base 65536)
and reduced modulo a prime below 2**31; the pair contributes the product of its id
residue and its hash residue. A digest is the count and, for each of two primes,
the sum of those products mod 2**64. Products (not sums) bind each hash to its id,
so a document that is lost, extra, stale or carries another item's hash changes
the digest; two different sets agree only by a ~2**-62 coincidence.

Python computes it with one big-integer conversion per string; OpenSearch computes
the same numbers server-side (:mod:`kfm_ops.stores.search.reading`), where every
product fits a signed 64-bit long. A digest says nothing about *which* ids differ:
on a mismatch the sorted merge of :mod:`kfm_ops.compare` names them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PRIMES = (2147483647, 2147483629)
MOD = 2**64


@dataclass(frozen=True)
class Digest:
    """Count and two product sums of a set of (id, content_hash) pairs (see the module docstring)."""

    count: int
    a: int
    b: int

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Digest:
        p1, p2 = PRIMES
        both = p1 * p2  # one big-number reduction per string; (x % both) % p == x % p for each prime
        count = a = b = 0
        to_int = int.from_bytes  # hot loop: a million pairs at 1M items
        for item_id, content_hash in pairs:
            i = to_int(item_id.encode("utf-16-be", "surrogatepass"), "big") % both
            h = to_int(content_hash.encode("utf-16-be", "surrogatepass"), "big") % both
            count += 1
            a += (i % p1) * (h % p1)
            b += (i % p2) * (h % p2)
        return cls(count, a % MOD, b % MOD)

    @classmethod
    def combine(cls, parts: Iterable[Digest]) -> Digest:
        parts = list(parts)
        return cls(sum(d.count for d in parts), sum(d.a for d in parts) % MOD, sum(d.b for d in parts) % MOD)
