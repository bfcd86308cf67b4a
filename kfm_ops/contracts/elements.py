"""Every element of the contracts, by a stable name: what the checks must read (contract coverage).

Names are ``<contract>:<kind>:<what>`` — ``postgis:column:kfm.items.title``,
``search:field:title.raw``, ``graph:relationship:Item-IN_DATASET->Dataset``,
``cache:summary_field:extent_bbox``, ``policy:item_gate.decision``. A check declares the
elements it verifies with ``@pytest.mark.covers(pattern, …)`` (shell-style patterns over these
names); ``tests/test_proofs_complete.py`` fails on any element no check covers, and on any
pattern that matches nothing; docs/checks.md lists the coverage.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kfm_ops import contracts


def _postgis(c: dict[str, Any], folder: Path | None) -> Iterator[str]:
    yield from ("postgis:min_server_version", "postgis:min_postgis_version", "postgis:srid", "postgis:extent")
    for table, spec in c["tables"].items():
        yield f"postgis:table:{table}"
        yield from (f"postgis:column:{table}.{column}" for column in spec.get("columns", {}))
        if spec.get("primary_key"):
            yield f"postgis:primary_key:{table}"
        yield from (f"postgis:geometry:{table}.{g}" for g in spec.get("geometry_columns", {}))
        yield from (f"postgis:gist_index:{table}.{g}" for g in spec.get("gist_indexes", []))
    yield from (f"postgis:state:{table}" for table in c.get("operational_state", {}))
    yield from (f"postgis:migration:{path.name}" for path in contracts.migrations(folder))


def _flatten(properties: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, spec in properties.items():
        yield f"{prefix}{name}"
        yield from _flatten(spec.get("properties", {}), f"{prefix}{name}.")
        yield from _flatten(spec.get("fields", {}), f"{prefix}{name}.")


def _search(c: dict[str, Any], _folder: Path | None) -> Iterator[str]:
    yield from ("search:alias", "search:index_prefix", "search:identity_index", "search:dynamic")
    yield from (f"search:setting:{name}" for name in c.get("settings", {}))
    yield from (f"search:shards:{environment}" for environment in c.get("shards", {}))
    yield from (f"search:field:{name}" for name in _flatten(c["mappings"]["properties"]))
    yield from (f"search:meta:{name}" for name in c.get("meta_fields", []))


def _graph(c: dict[str, Any], _folder: Path | None) -> Iterator[str]:
    yield "graph:identity_label"
    for label, spec in c["labels"].items():
        yield f"graph:label:{label}"
        yield from (f"graph:property:{label}.{prop}" for prop in spec.get("properties", []))
    for rel, spec in c["relationships"].items():
        yield f"graph:relationship:{spec['from']}-{rel}->{spec['to']}"
    yield from (f"graph:constraint:{entry['name']}" for entry in c.get("constraints", []))
    yield from (f"graph:index:{entry['name']}" for entry in c.get("indexes", []))


def _cache(c: dict[str, Any], _folder: Path | None) -> Iterator[str]:
    for view, spec in c.get("materialized_views", {}).items():
        yield f"cache:view:{view}"
        yield from (f"cache:view_column:{view}.{column}" for column in spec.get("columns", []))
        yield f"cache:unique_index:{view}"
    redis = c["redis"]
    for key in ("summary_key", "index_key", "meta_key", "identity_key", "summary_ttl_seconds",
                "summary_ttl_min_seconds", "maxmemory_policy"):
        if key in redis:
            yield f"cache:{key}"
    yield from (f"cache:summary_field:{name}" for name in redis.get("summary_fields", []))
    yield from (f"cache:meta_field:{name}" for name in redis.get("meta_fields", []))


def _policy(c: dict[str, Any], _folder: Path | None) -> Iterator[str]:
    if c.get("bundle") is not None:
        yield "policy:bundle"
    yield from ("policy:item_gate.decision", "policy:item_gate.input", "policy:item_gate.allow",
                "policy:item_gate.deny")
    if c["item_gate"].get("batch") is not None:
        yield "policy:item_gate.batch"
    yield "policy:sensitivity.grid_degrees"


ENUMERATE = {"postgis": _postgis, "search": _search, "graph": _graph, "cache": _cache, "policy": _policy}


def elements(folder: Path | None = None) -> list[str]:
    """Every element of every contract (of ``folder``, else the built-in ones), sorted."""
    return sorted(e for name in contracts.NAMES for e in ENUMERATE[name](contracts.load(name, folder), folder))
