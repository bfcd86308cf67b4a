"""Order-free digests of (id, content_hash) sets: proving two stores equal without a sorted merge.

Per pair, each string is read as one number (its UTF-16 code units in base 65536)
and reduced modulo a prime below 2**31; the pair contributes the product of its id
residue and its hash residue. A digest is the count and, for each of two primes,
the sum of those products mod 2**64. Products (not sums) bind each hash to its id,
so a document that is lost, extra, stale or carries another item's hash changes
the digest; two different sets agree only by a ~2**-62 coincidence.

Python computes it with one big-integer conversion per string; OpenSearch computes
the same numbers server-side in a painless aggregation, where every product fits a
signed 64-bit long. A digest says nothing about *which* ids differ: on a mismatch
:func:`search_matches` runs the sorted merge of :mod:`kfm_ops.consistency`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from opensearchpy import ConnectionTimeout, RequestError

from kfm_ops import log
from kfm_ops.clients import describe
from kfm_ops.consistency import ID_ORDER, Diff, Pair, canonical_pairs, compare, pit_pairs, search_pairs

PRIMES = (2147483647, 2147483629)
MOD = 2**64

# The same arithmetic as Digest.of: (x * 65536 + unit) % p stays below 2**47, products below 2**62.
_MAP_SCRIPT = """
long residue(String s, long p) {
  long x = 0L;
  for (int k = 0; k < s.length(); ++k) { x = (x * 65536L + (long) s.charAt(k)) % p; }
  return x;
}
String id = doc['id'].size() == 0 ? '' : doc['id'].value;
String h = doc['content_hash'].size() == 0 ? '' : doc['content_hash'].value;
state.n += 1L;
state.a += residue(id, params.p1) * residue(h, params.p1);
state.b += residue(id, params.p2) * residue(h, params.p2);
"""
_AGGREGATION = {"scripted_metric": {
    "init_script": "state.n = 0L; state.a = 0L; state.b = 0L",
    "map_script": _MAP_SCRIPT,
    "combine_script": "return state",
    "reduce_script": "long n = 0L; long a = 0L; long b = 0L; "
                     "for (s in states) { if (s != null) { n += s.n; a += s.a; b += s.b } } "
                     "return ['n': n, 'a': Long.toUnsignedString(a), 'b': Long.toUnsignedString(b)]",
    "params": {"p1": PRIMES[0], "p2": PRIMES[1]},
}}


@dataclass(frozen=True)
class Digest:
    """Count and two product sums of a set of (id, content_hash) pairs (see the module docstring)."""

    count: int
    a: int
    b: int

    @classmethod
    def of(cls, pairs: Iterable[Pair]) -> Digest:
        p1, p2 = PRIMES
        count = a = b = 0
        to_int = int.from_bytes  # hot loop: a million pairs at 1M items
        for item_id, content_hash in pairs:
            i = to_int(item_id.encode("utf-16-be", "surrogatepass"), "big")
            h = to_int(content_hash.encode("utf-16-be", "surrogatepass"), "big")
            count += 1
            a += (i % p1) * (h % p1)
            b += (i % p2) * (h % p2)
        return cls(count, a % MOD, b % MOD)

    @classmethod
    def combine(cls, parts: Iterable[Digest]) -> Digest:
        parts = list(parts)
        return cls(sum(d.count for d in parts), sum(d.a for d in parts) % MOD, sum(d.b for d in parts) % MOD)


def search_digest(client: Any, index: str) -> Digest:
    """The digest of a search index (or alias): server-side, or read back where scripts are refused.

    The aggregation reads doc values on the cluster and ships three numbers. A cluster
    that refuses inline scripts (or is too slow for one request) gets the read-back.
    """
    try:
        found = client.search(index=index, body={"size": 0, "track_total_hits": False,
                                                 "aggs": {"digest": _AGGREGATION}},
                              params={"request_cache": "false"})
    except (RequestError, ConnectionTimeout) as exc:
        log.get_logger().info("digest.read_back", index=index, reason=describe(exc))
        return read_back_digest(client, index)
    value = found["aggregations"]["digest"]["value"]
    return Digest(int(value["n"]), int(value["a"]) % MOD, int(value["b"]) % MOD)


def read_back_digest(client: Any, index: str, *, parts: int = 2, batch: int = 10_000,
                     keep_alive: str = "2m") -> Digest:
    """The digest from every document's doc values, read in index order by ``parts`` readers at once.

    On a single shard ``_doc`` is one total order of a point in time, so [0, s) and
    [s, ∞) split the documents exactly, whatever s is; each page costs only itself.
    Any other layout is read in id order, correct for all.
    """
    created = client.create_pit(index=index, params={"keep_alive": keep_alive})
    pit = created["pit_id"]
    try:
        if created.get("_shards", {}).get("total") != 1:
            return Digest.of(pair for _, pair in pit_pairs(client, pit, sort=ID_ORDER, batch=batch,
                                                           keep_alive=keep_alive))
        docs = client.indices.stats(index=index, metric="docs")["_all"]["primaries"]["docs"]
        size = int(docs.get("count", 0)) + int(docs.get("deleted", 0))
        bounds: list[int | None] = [size * k // parts for k in range(parts)] + [None]
        with ThreadPoolExecutor(max_workers=parts, thread_name_prefix="kfm-digest") as pool:
            return Digest.combine(pool.map(lambda k: Digest.of(_index_order_pairs(
                client, pit, bounds[k] or 0, bounds[k + 1], batch=batch, keep_alive=keep_alive)), range(parts)))
    finally:
        client.delete_pit(body={"pit_id": [pit]})


def _index_order_pairs(client: Any, pit: str, lo: int, hi: int | None, *, batch: int,
                       keep_alive: str) -> Iterator[Pair]:
    """Pairs whose index-order position (the ``_doc`` sort value) is in [lo, hi)."""
    for position, pair in pit_pairs(client, pit, sort=["_doc"], after=[lo - 1] if lo > 0 else None, batch=batch,
                                    keep_alive=keep_alive):
        if hi is not None and position >= hi:
            return
        yield pair


def search_matches(conn: psycopg.Connection, client: Any, index: str, *, store: str, first_n: int = 10) -> Diff:
    """Compare a search index (or alias) with the canonical set: digests first, the merge on a mismatch.

    The canonical digest (streamed from PostGIS, summed here) is computed in a thread
    while the cluster computes its own. Equal digests give a clean Diff with
    ``compared`` = the count; a mismatch runs :func:`compare`, which names the
    missing, orphaned and stale ids.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfm-digest") as pool:
        canonical = pool.submit(lambda: Digest.of(canonical_pairs(conn)))
        derived = search_digest(client, index)
        if canonical.result() == derived:
            return Diff(store=store, first_n=first_n, compared=derived.count)
    return compare(canonical_pairs(conn), search_pairs(client, index), store=store, first_n=first_n)
