"""Every identifier a contract supplies is checked when the contract is loaded.

Contract values end up inside index names, Cypher, SQL and Redis keys. Cypher labels and
properties are quoted where they are used, keys substitute ``{dataset_id}`` only — and
still, a value outside these shapes is refused at load with exit 2, naming the file and
the field, before anything is asked of a store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from kfm_ops.errors import UsageError

INDEX = re.compile(r"[a-z0-9][a-z0-9._-]{0,200}")  # OpenSearch index/alias names (no wildcard, comma, upper case)
CYPHER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,100}")  # labels, relationship types, properties, constraint names
SQL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SQL_TABLE = re.compile(r"[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}")
REDIS_KEY = re.compile(r"[A-Za-z0-9:._-]{1,200}")
OPA_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,100}(/[A-Za-z_][A-Za-z0-9_]{0,100}){0,20}")  # under /v1/data/
JSON_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_:-]{0,100}")
KEY_TEMPLATE = re.compile(r"[A-Za-z0-9:._-]*\{dataset_id\}[A-Za-z0-9:._-]*")


def _search(c: dict[str, Any]) -> Iterator[tuple[str, Any, re.Pattern[str]]]:
    for field in ("alias", "index_prefix", "identity_index"):
        yield field, c.get(field), INDEX


def _graph(c: dict[str, Any]) -> Iterator[tuple[str, Any, re.Pattern[str]]]:
    yield "identity_label", c.get("identity_label"), CYPHER
    for label, spec in c.get("labels", {}).items():
        yield "labels", label, CYPHER
        yield f"labels.{label}.key", spec.get("key"), CYPHER
        for prop in spec.get("properties", []):
            yield f"labels.{label}.properties", prop, CYPHER
    for rel, spec in c.get("relationships", {}).items():
        yield "relationships", rel, CYPHER
        yield f"relationships.{rel}.from", spec.get("from"), CYPHER
        yield f"relationships.{rel}.to", spec.get("to"), CYPHER
    for kind in ("constraints", "indexes"):
        for n, entry in enumerate(c.get(kind, [])):
            for field in ("name", "label", "property"):
                yield f"{kind}[{n}].{field}", entry.get(field), CYPHER


def _cache(c: dict[str, Any]) -> Iterator[tuple[str, Any, re.Pattern[str]]]:
    redis = c.get("redis", {})
    yield "redis.summary_key", redis.get("summary_key"), KEY_TEMPLATE
    for field in ("index_key", "meta_key", "identity_key"):
        yield f"redis.{field}", redis.get(field), REDIS_KEY
    for view, spec in c.get("materialized_views", {}).items():
        yield "materialized_views", view, SQL_TABLE
        yield f"materialized_views.{view}.unique_index", spec.get("unique_index"), SQL_NAME
        for column in spec.get("columns", []):
            yield f"materialized_views.{view}.columns", column, SQL_NAME


def _postgis(c: dict[str, Any]) -> Iterator[tuple[str, Any, re.Pattern[str]]]:
    for table, spec in c.get("tables", {}).items():
        yield "tables", table, SQL_TABLE
        for column in [*spec.get("columns", {}), *spec.get("primary_key", []), *spec.get("geometry_columns", {}),
                       *spec.get("gist_indexes", [])]:
            yield f"tables.{table}", column, SQL_NAME


def _policy(c: dict[str, Any]) -> Iterator[tuple[str, Any, re.Pattern[str]]]:
    bundle = c.get("bundle")
    if bundle is not None:  # null: the bundle carries no identity document
        yield "bundle.document", bundle.get("document"), OPA_PATH
        yield "bundle.name", bundle.get("name"), JSON_KEY
    gate = c.get("item_gate", {})
    yield "item_gate.decision", gate.get("decision"), OPA_PATH
    if gate.get("input") is not None:  # null: the bare item is the input
        yield "item_gate.input", gate.get("input"), JSON_KEY
    yield "item_gate.allow", gate.get("allow"), JSON_KEY
    yield "item_gate.deny", gate.get("deny"), JSON_KEY
    batch = gate.get("batch")
    if batch is not None:  # null: one decision per item
        yield "item_gate.batch.document", batch.get("document"), OPA_PATH
        yield "item_gate.batch.input", batch.get("input"), JSON_KEY
    yield "sensitivity.grid_degrees", c.get("sensitivity", {}).get("grid_degrees"), OPA_PATH


FIELDS = {"search": _search, "graph": _graph, "cache": _cache, "postgis": _postgis, "policy": _policy}


def validate(name: str, contract: dict[str, Any], path: str) -> None:
    """Raise UsageError (exit 2) for the first identifier of contract ``name`` that is not of its shape."""
    for field, value, shape in FIELDS[name](contract):
        if not isinstance(value, str) or not shape.fullmatch(value):
            raise UsageError(f"contract file {path!r}: {field} is {value!r}, not a valid identifier "
                             f"(expected {shape.pattern})", hint="fix the contract (KFM_CONTRACTS_DIR)")
