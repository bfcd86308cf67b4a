"""Baselines: the contract state a check inspects, in place before a proof injects its fault.

They work on a stack the ``kfm-maint`` actions populated (they then change nothing)
and on an empty one (they create the contract state and remove exactly that at the
end), so a proof fails its check for the injected fault and not for a missing
precondition.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kfm_ops import contracts
from kfm_ops.stores.graph import GraphStore, quoted
from kfm_ops.stores.postgis import PostgisStore
from maintenance import migrate
from tests.proving import PROOF


@pytest.fixture(scope="session")
def pg_baseline(owner_pg: PostgisStore) -> PostgisStore:
    """The kfm-ops schema applied (idempotent migrations; left in place, it is the contract)."""
    migrate.apply(owner_pg)
    return owner_pg


@pytest.fixture(scope="session")
def matview_baseline(pg_baseline: PostgisStore) -> Iterator[PostgisStore]:
    """kfm_cache.dataset_stats populated; back to WITH NO DATA at the end if it was not."""
    populated = pg_baseline.scalar(
        "SELECT ispopulated FROM pg_matviews WHERE schemaname = 'kfm_cache' AND matviewname = 'dataset_stats'")
    if not populated:
        pg_baseline.execute("REFRESH MATERIALIZED VIEW kfm_cache.dataset_stats")
    yield pg_baseline
    if not populated:
        pg_baseline.execute("REFRESH MATERIALIZED VIEW kfm_cache.dataset_stats WITH NO DATA")


@pytest.fixture(scope="session")
def search_baseline(search_writer: Any) -> Iterator[str]:
    """The contract alias resolves to one index with the contract mapping; returns that index."""
    contract = contracts.load("search")
    alias = contract["alias"]
    created = None
    if not search_writer.indices.exists_alias(name=alias):
        created = f"{contract['index_prefix']}1"
        if not search_writer.indices.exists(index=created):
            search_writer.indices.create(index=created, body={
                "settings": contracts.search_index_settings(contract, "dev"), "mappings": contract["mappings"],
                "aliases": {alias: {}}})
        else:
            search_writer.indices.put_alias(index=created, name=alias)
    index = sorted(search_writer.indices.get_alias(name=alias))[0]
    yield index
    if created and sorted(search_writer.indices.get_alias(name=alias, ignore_unavailable=True)) == [created]:
        search_writer.indices.delete(index=created)


def create_constraint(c: dict[str, str], prop: str | None = None) -> str:
    """The Cypher creating contract constraint ``c`` (on ``prop`` instead of its property, for a fault)."""
    return (f"CREATE CONSTRAINT {quoted(c['name'])} IF NOT EXISTS FOR (n:{quoted(c['label'])}) "
            f"REQUIRE n.{quoted(prop or c['property'])} IS UNIQUE")


def restore_constraint(graph: GraphStore, name: str) -> None:
    """Drop whatever constraint ``name`` is now and create the contract's one, waiting for its index."""
    wanted = next(c for c in contracts.load("graph")["constraints"] if c["name"] == name)
    graph.run(f"DROP CONSTRAINT {quoted(name)} IF EXISTS")
    graph.run(create_constraint(wanted))
    graph.run("CALL db.awaitIndexes(60)")


@pytest.fixture(scope="session")
def graph_baseline(graph_writer: GraphStore) -> Iterator[GraphStore]:
    """Every graph.json constraint exists; the ones created here are dropped at the end."""
    existing = {r["name"] for r in graph_writer.run("SHOW CONSTRAINTS YIELD name RETURN name")}
    created = []
    for c in contracts.load("graph")["constraints"]:
        if c["name"] not in existing:
            graph_writer.run(create_constraint(c))
            created.append(c["name"])
    graph_writer.run("CALL db.awaitIndexes(60)")
    yield graph_writer
    for name in created:
        graph_writer.run(f"DROP CONSTRAINT {quoted(name)} IF EXISTS")


@pytest.fixture(scope="session")
def cache_baseline(cache_writer: Any) -> Iterator[Any]:
    """The cache meta hash exists; created here (and deleted at the end) only when missing."""
    redis_contract = contracts.load("cache")["redis"]
    key = redis_contract["meta_key"]
    created = not cache_writer.exists(key)
    if created:
        cache_writer.hset(key, mapping={f: f"{PROOF}-baseline" for f in redis_contract["meta_fields"]})
    yield cache_writer
    if created:
        cache_writer.delete(key)
