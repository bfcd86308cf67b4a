"""Reading a search index in full: point-in-time pages, (id, content_hash) streams, the digest.

Streams read doc values only (no stored field, not even ``_id``), page by page through a
point in time, so a million documents cost the client a page at a time. The digest
(:mod:`kfm_ops.digest`) is computed on the cluster by a painless aggregation; a cluster
that refuses inline scripts gets the same numbers from a read-back of every document.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opensearchpy import OpenSearch

from kfm_ops import log
from kfm_ops.buckets import BUCKETS, Digests
from kfm_ops.digest import MOD, PRIMES, Digest
from kfm_ops.errors import ServiceError
from kfm_ops.faults import BAD_REQUEST, TIMEOUT

Pair = tuple[str, str]
ID_ORDER = [{"id": "asc"}]

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


def pit_pairs(client: OpenSearch, pit: str, *, sort: list[Any], after: list[Any] | None = None,
              batch: int = 10_000, keep_alive: str = "2m",
              query: dict[str, Any] | None = None) -> Iterator[tuple[Any, Pair]]:
    """(sort value, pair) of every document of a point in time past ``after`` (matching ``query``), from doc
    values, page by page."""
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
        if query is not None:
            body["query"] = query
        found = client.search(body=body, params={"filter_path": "hits.hits.fields,hits.hits.sort"})
        hits = found.get("hits", {}).get("hits", [])
        if not hits:
            return
        for hit in hits:
            fields = hit.get("fields", {})
            yield hit["sort"][0], ((fields.get("id") or [""])[0], (fields.get("content_hash") or [""])[0])
        after = hits[-1]["sort"]


def search_pairs(client: OpenSearch, index: str, *, batch: int = 10_000, keep_alive: str = "2m") -> Iterator[Pair]:
    """Documents of ``index``, id-ordered, via point-in-time + search_after."""
    pit = client.create_pit(index=index, params={"keep_alive": keep_alive})["pit_id"]
    try:
        for _, pair in pit_pairs(client, pit, sort=ID_ORDER, batch=batch, keep_alive=keep_alive):
            yield pair
    finally:
        client.delete_pit(body={"pit_id": [pit]})


def search_digest(client: OpenSearch, index: str) -> Digest:
    """The digest of a search index (or alias): server-side, or read back where scripts are refused.

    The aggregation reads doc values on the cluster and ships three numbers. A cluster
    that refuses inline scripts (or is too slow for one request) gets the read-back.
    """
    try:
        found = client.search(index=index, body={"size": 0, "track_total_hits": False,
                                                 "aggs": {"digest": _AGGREGATION}},
                              params={"request_cache": "false"})
    except ServiceError as exc:
        if exc.fault not in (BAD_REQUEST, TIMEOUT):
            raise
        log.get_logger().info("digest.read_back", index=index, reason=exc.reason)
        return read_back_digest(client, index)
    value = found["aggregations"]["digest"]["value"]
    return Digest(int(value["n"]), int(value["a"]) % MOD, int(value["b"]) % MOD)


def read_back_digest(client: OpenSearch, index: str, *, parts: int = 2, batch: int = 10_000,
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


def _index_order_pairs(client: OpenSearch, pit: str, lo: int, hi: int | None, *, batch: int,
                       keep_alive: str) -> Iterator[Pair]:
    """Pairs whose index-order position (the ``_doc`` sort value) is in [lo, hi)."""
    for position, pair in pit_pairs(client, pit, sort=["_doc"], after=[lo - 1] if lo > 0 else None, batch=batch,
                                    keep_alive=keep_alive):
        if hi is not None and position >= hi:
            return
        yield pair


def bucket_digests(client: OpenSearch, index: str, which: list[int] | None = None) -> Digests:
    """Per bucket of the documents (of the buckets ``which`` only, when given): (count, sum of sync_h1, sum of
    sync_h2), summed by OpenSearch (no script)."""
    body: dict[str, Any] = {
        "size": 0, "track_total_hits": False,
        "aggs": {"b": {"terms": {"field": "sync_bucket", "size": BUCKETS, "missing": -1},
                       "aggs": {"h1": {"sum": {"field": "sync_h1"}}, "h2": {"sum": {"field": "sync_h2"}}}}}}
    if which is not None:
        body["query"] = {"terms": {"sync_bucket": which}}
    found = client.search(index=index, body=body, params={"request_cache": "false"})
    return {int(b["key"]): (int(b["doc_count"]), int(b["h1"]["value"]), int(b["h2"]["value"]))
            for b in found["aggregations"]["b"]["buckets"]}


def pairs_in_buckets(client: OpenSearch, index: str, buckets: list[int], *, batch: int = 10_000,
                     keep_alive: str = "2m") -> Iterator[Pair]:
    """(id, content_hash) of the documents in ``buckets``, id-ordered (point in time + search_after)."""
    wanted = [b for b in buckets if b >= 0]
    query: dict[str, Any] = {"bool": {"should": [{"terms": {"sync_bucket": wanted}}], "minimum_should_match": 1}}
    if -1 in buckets:  # documents written before the sync fields existed
        query["bool"]["should"].append({"bool": {"must_not": {"exists": {"field": "sync_bucket"}}}})
    pit = client.create_pit(index=index, params={"keep_alive": keep_alive})["pit_id"]
    try:
        for _, pair in pit_pairs(client, pit, sort=ID_ORDER, batch=batch, keep_alive=keep_alive, query=query):
            yield pair
    finally:
        client.delete_pit(body={"pit_id": [pit]})


def pairs_of(client: OpenSearch, index: str, ids: list[str]) -> list[Pair]:
    """(id, content_hash) of the documents among ``ids``, id-ordered (by id: no search, no refresh needed)."""
    found: list[Pair] = []
    for start in range(0, len(ids), 1000):
        docs = client.mget(index=index, body={"ids": ids[start:start + 1000]}, _source=["content_hash"])["docs"]
        found.extend((d["_id"], d["_source"].get("content_hash") or "") for d in docs if d.get("found"))
    return sorted(found)


def datasets_present(client: OpenSearch, index: str, dataset_ids: list[str]) -> set[str]:
    """Which of ``dataset_ids`` have at least one document in ``index``: one query per dataset in one request,
    each stopped at its first hit (an aggregation would visit every document of those datasets)."""
    if not dataset_ids:
        return set()
    body: list[dict[str, Any]] = []
    for dataset in dataset_ids:
        body += [{"index": index}, {"size": 0, "terminate_after": 1, "track_total_hits": True,
                                    "query": {"term": {"dataset_id": dataset}}}]
    answers = client.msearch(body=body)["responses"]
    failed = [(d, a["error"]) for d, a in zip(dataset_ids, answers, strict=True) if "error" in a]
    if failed:
        raise ServiceError("search", f"{index}/_msearch", BAD_REQUEST,
                           f"{len(failed)} of {len(dataset_ids)} dataset lookups failed; first ({failed[0][0]}): "
                           f"{failed[0][1]}")
    return {d for d, a in zip(dataset_ids, answers, strict=True) if a["hits"]["total"]["value"] > 0}


def dataset_ids(client: OpenSearch, index: str, ids: list[str]) -> dict[str, str]:
    """The dataset_id each document of ``ids`` carries."""
    found: dict[str, str] = {}
    for start in range(0, len(ids), 1000):
        docs = client.mget(index=index, body={"ids": ids[start:start + 1000]}, _source=["dataset_id"])["docs"]
        found.update({d["_id"]: d["_source"].get("dataset_id", "") for d in docs if d.get("found")})
    return found


def search_sources(client: OpenSearch, index: str, *, batch: int = 2000, keep_alive: str = "2m",
                   query: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, _source) of every document of ``index``, id-ordered (point in time + search_after): the records
    themselves, for the content comparison (kfm_ops.content)."""
    pit = client.create_pit(index=index, params={"keep_alive": keep_alive})["pit_id"]
    after: list[Any] | None = None
    try:
        while True:
            body: dict[str, Any] = {"size": batch, "sort": ID_ORDER, "pit": {"id": pit, "keep_alive": keep_alive},
                                    "track_total_hits": False, **({"query": query} if query else {})}
            if after is not None:
                body["search_after"] = after
            hits = client.search(body=body, params={"filter_path": "hits.hits._id,hits.hits._source,hits.hits.sort"}
                                 ).get("hits", {}).get("hits", [])
            if not hits:
                return
            for hit in hits:
                yield hit["_id"], hit.get("_source", {})
            after = hits[-1]["sort"]
    finally:
        client.delete_pit(body={"pit_id": [pit]})


def sources(client: OpenSearch, index: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The _source of each document of ``ids`` that exists."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 1000):
        docs = client.mget(index=index, body={"ids": ids[start:start + 1000]})["docs"]
        found.update({d["_id"]: d.get("_source", {}) for d in docs if d.get("found")})
    return found
