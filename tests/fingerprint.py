"""Fingerprints of every store, to prove that a run wrote nothing (or nothing more)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

SCHEMAS = ("kfm", "kfm_ops", "kfm_cache", "kfm_auth")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def postgis(conn: Any) -> dict[str, str]:
    tables = conn.execute(
        "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname = ANY(%s) "
        "UNION ALL SELECT schemaname || '.' || matviewname FROM pg_matviews WHERE schemaname = ANY(%s) "
        "AND ispopulated ORDER BY 1", (list(SCHEMAS), list(SCHEMAS))).fetchall()
    found = {}
    for (table,) in tables:
        row = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                           f"FROM {table} t").fetchone()
        found[table] = f"{row[0]}:{row[1]}"
    return found


def search(client: Any) -> dict[str, Any]:
    stats = client.indices.stats(index="kfm-*", metric="docs,indexing")["indices"]
    aliases = client.indices.get_alias(index="kfm-*")
    return {name: {"docs": s["primaries"]["docs"]["count"], "indexed": s["primaries"]["indexing"]["index_total"],
                   "deleted": s["primaries"]["indexing"]["delete_total"],
                   "aliases": sorted(aliases.get(name, {}).get("aliases", {}))}
            for name, s in stats.items()}


def graph(handle: Any) -> dict[str, Any]:
    nodes = handle.run("MATCH (n) RETURN labels(n) AS l, properties(n) AS p")
    rels = handle.run("MATCH (a)-[r]->(b) RETURN type(r) AS t, a.id AS a, b.id AS b")
    return {"nodes": len(nodes), "nodes_digest": _digest(sorted(json.dumps(n, sort_keys=True, default=str)
                                                                 for n in nodes)),
            "relationships": len(rels), "relationships_digest": _digest(sorted(
                json.dumps(r, sort_keys=True) for r in rels))}


def cache(client: Any) -> dict[str, Any]:
    found = {}
    for key in sorted(client.scan_iter(match="*", count=500)):
        kind = client.type(key)
        readers: dict[str, Any] = {"hash": client.hgetall, "set": lambda k: sorted(client.smembers(k)),
                                   "string": client.get}
        value = readers[kind](key) if kind in readers else kind
        found[key] = _digest([kind, value, client.ttl(key) > 0])
    return found


def everything(owner_pg: Any, search_writer: Any, graph_writer: Any, cache_writer: Any) -> dict[str, Any]:
    return {"postgis": postgis(owner_pg), "search": search(search_writer), "graph": graph(graph_writer),
            "cache": cache(cache_writer)}
