"""The mutation score: faults derived from the contracts, injected into the local stack, caught or missed.

    python -m bench.mutation [--only PATTERN] [--out bench/mutation.json]

``--only`` runs the elements it matches again and replaces their outcomes in an existing file.

For every contract element (kfm_ops/contracts/elements.py) a family of small corruptions of
the store that holds it — a column renamed, an index dropped, a document's field rewritten, a
relationship deleted, a summary field changed, a key's TTL removed — or, where the store holds
nothing to corrupt (a version floor, a policy document's path), of the deployment's contract
copy. Each is injected, the checks of that store — and of every service whose checks cover
the element — run in a fresh pytest process, and the corruption is undone. A mutation is
*caught* when at least one check fails; a corruption the store itself refuses (a typed
geometry column rejects another SRID) is *enforced* and left out of the score. The healthy
stack must pass every check before and after.

Results go to bench/mutation.json; docs/checks.md shows the score and every miss by name
(``python -m tests.test_proofs_complete > docs/checks.md``). Slow (a check run per mutation):
run it by hand on a quiet machine, not in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kfm_ops import contracts
from kfm_ops.contracts.elements import elements
from kfm_ops.hub import ServiceHub
from kfm_ops.settings import load_settings
from tests.helpers import run_checks

ROOT = Path(__file__).resolve().parent.parent
MUTANT = "kfm_mutant"


@dataclass
class Mutation:
    """One corruption of one contract element: how to inject it and how to undo it."""

    element: str
    name: str
    inject: Callable[[], None]
    restore: Callable[[], None]
    contract: tuple[str, Callable[[dict[str, Any]], None]] | None = None  # a change of the contract copy instead


@dataclass
class Outcome:
    element: str
    name: str
    result: str  # caught, missed, enforced, elsewhere (another environment's element: nothing here to corrupt)
    failing: list[str] = field(default_factory=list)
    note: str = ""


def noop() -> None:
    """Nothing to inject or undo in a store (a contract-side mutation)."""


def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], None]:
    """``function(*args, **kwargs)`` later, its result dropped."""
    def later() -> None:
        function(*args, **kwargs)
    return later


class Families:
    """The corruption families, per kind of element, on the live local stack."""

    def __init__(self, hub: ServiceHub) -> None:
        self.pg = hub.postgis(write=True)
        self.search = hub.search(write=True).client
        self.graph = hub.graph(write=True)
        self.redis = hub.cache(write=True).client
        self.contracts = {name: contracts.load(name) for name in contracts.NAMES}
        self.alias = self.contracts["search"]["alias"]
        self.environment = hub.settings.environment

    def of(self, element: str) -> Iterator[Mutation]:
        store, kind, *rest = element.split(":", 2)
        what = rest[0] if rest else ""
        method = getattr(self, f"{store}_{kind}".replace(".", "_"), None)
        if method is None:
            yield from self.contract_side(element, store, kind)
        else:
            yield from method(element, what)

    # --- postgis
    def sql(self, statement: str, params: Any = None) -> Callable[[], None]:
        return call(self.pg.execute, statement, params)

    def postgis_table(self, element: str, table: str) -> Iterator[Mutation]:
        schema, name = table.split(".")
        yield Mutation(element, "table renamed", self.sql(f'ALTER TABLE {table} RENAME TO "{name}_{MUTANT}"'),
                       self.sql(f'ALTER TABLE {schema}."{name}_{MUTANT}" RENAME TO "{name}"'))

    def postgis_column(self, element: str, target: str) -> Iterator[Mutation]:
        schema, table, column = target.split(".")  # kfm.items.title
        yield Mutation(element, "column renamed",
                       self.sql(f'ALTER TABLE {schema}.{table} RENAME COLUMN "{column}" TO "{column}_{MUTANT}"'),
                       self.sql(f'ALTER TABLE {schema}.{table} RENAME COLUMN "{column}_{MUTANT}" TO "{column}"'))

    def postgis_primary_key(self, element: str, table: str) -> Iterator[Mutation]:
        pk = self.pg.one("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                         "WHERE conrelid = %s::regclass AND contype = 'p'", (table,))
        referencing = self.pg.rows("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                                   "FROM pg_constraint WHERE confrelid = %s::regclass AND contype = 'f'", (table,))

        def restore() -> None:
            self.pg.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{pk[0]}" {pk[1]}')
            for owner, name, definition in referencing:
                self.pg.execute(f'ALTER TABLE {owner} ADD CONSTRAINT "{name}" {definition}')

        yield Mutation(element, "primary key dropped",
                       self.sql(f'ALTER TABLE {table} DROP CONSTRAINT "{pk[0]}" CASCADE'), restore)

    def postgis_geometry(self, element: str, target: str) -> Iterator[Mutation]:
        table, column = target.rsplit(".", 1)
        row = self.pg.one(f"SELECT id, ST_AsEWKT({column}) FROM {table} ORDER BY id LIMIT 1")
        yield Mutation(element, "one geometry in another SRID",
                       self.sql(f"UPDATE {table} SET {column} = ST_SetSRID({column}, 3857) WHERE id = %s", (row[0],)),
                       self.sql(f"UPDATE {table} SET {column} = ST_GeomFromEWKT(%s) WHERE id = %s", (row[1], row[0])))
        yield Mutation(element, "one self-intersecting geometry",
                       self.sql(f"UPDATE {table} SET {column} = ST_GeomFromText("
                                "'POLYGON((-98 38, -97 39, -97 38, -98 39, -98 38))', 4326) WHERE id = %s", (row[0],)),
                       self.sql(f"UPDATE {table} SET {column} = ST_GeomFromEWKT(%s) WHERE id = %s", (row[1], row[0])))

    def postgis_gist_index(self, element: str, target: str) -> Iterator[Mutation]:
        table = target.rsplit(".", 1)[0]
        name, definition = self.pg.one(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_am a ON a.oid = i.relam WHERE x.indrelid = %s::regclass AND a.amname = 'gist' LIMIT 1", (table,))
        schema = table.split(".")[0]
        yield Mutation(element, "GiST index dropped", self.sql(f'DROP INDEX {schema}."{name}"'), self.sql(definition))

    def postgis_srid(self, element: str, _what: str) -> Iterator[Mutation]:
        yield from self.postgis_geometry(element, "kfm.places.geom")

    def postgis_extent(self, element: str, _what: str) -> Iterator[Mutation]:
        row = self.pg.one("SELECT id, ST_AsEWKT(geom) FROM kfm.places ORDER BY id LIMIT 1")
        undo = self.sql("UPDATE kfm.places SET geom = ST_GeomFromEWKT(%s) WHERE id = %s", (row[1], row[0]))
        yield Mutation(element, "a place in Paris",
                       self.sql("UPDATE kfm.places SET geom = ST_SetSRID(ST_MakePoint(2.35, 48.85), 4326) "
                                "WHERE id = %s", (row[0],)), undo)
        yield Mutation(element, "a place in Web-Mercator metres",
                       self.sql("UPDATE kfm.places SET geom = ST_SetSRID(ST_MakePoint(-10880000, 4650000), 4326) "
                                "WHERE id = %s", (row[0],)), undo)

    def postgis_state(self, element: str, table: str) -> Iterator[Mutation]:
        if table == "kfm_ops.environment":
            saved = self.pg.rows("SELECT to_jsonb(e) FROM kfm_ops.environment e")
            yield Mutation(element, "environment marker deleted", self.sql("DELETE FROM kfm_ops.environment"),
                           call(self.reinsert, "kfm_ops.environment", [r[0] for r in saved]))
        elif table == "kfm_ops.schema_migrations":
            name, checksum = self.pg.one("SELECT name, checksum FROM kfm_ops.schema_migrations ORDER BY name LIMIT 1")
            yield Mutation(element, "a migration's checksum edited",
                           self.sql("UPDATE kfm_ops.schema_migrations SET checksum = 'edited' WHERE name = %s",
                                    (name,)),
                           self.sql("UPDATE kfm_ops.schema_migrations SET checksum = %s WHERE name = %s",
                                    (checksum, name)))
        elif table == "kfm_ops.sync_watermarks":
            yield Mutation(element, "search watermark a year back",
                           self.sql("UPDATE kfm_ops.sync_watermarks SET watermark = watermark - interval '1 year' "
                                    "WHERE store = 'search'"),
                           self.sql("UPDATE kfm_ops.sync_watermarks SET watermark = watermark + interval '1 year' "
                                    "WHERE store = 'search'"))
        elif table == "kfm_ops.audit_ledger":
            run_id = "00000000-0000-4000-8000-00000000abcd"
            yield Mutation(element, "a run without its end record",
                           self.sql("INSERT INTO kfm_ops.audit_ledger (run_id, action, actor, environment, plan, "
                                    "outcome, started_at) VALUES (%s, 'cache-rebuild', 'mutant', 'dev', '{}', "
                                    "'running', now() - interval '1 hour')", (run_id,)),
                           self.sql("DELETE FROM kfm_ops.audit_ledger WHERE run_id = %s", (run_id,)))

    def postgis_migration(self, element: str, name: str) -> Iterator[Mutation]:
        rows = self.pg.rows("SELECT to_jsonb(m) FROM kfm_ops.schema_migrations m WHERE name = %s", (name,))
        yield Mutation(element, "migration record deleted",
                       self.sql("DELETE FROM kfm_ops.schema_migrations WHERE name = %s", (name,)),
                       call(self.reinsert, "kfm_ops.schema_migrations", [r[0] for r in rows]))

    def reinsert(self, table: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.pg.execute(f"INSERT INTO {table} SELECT * FROM jsonb_populate_record(NULL::{table}, %s)",
                            (json.dumps(row),))

    # --- search
    def live(self) -> str:
        return next(iter(self.search.indices.get_alias(name=self.alias)))

    def search_alias(self, element: str, _what: str) -> Iterator[Mutation]:
        index = self.live()
        yield Mutation(element, "alias removed", lambda: self.search.indices.delete_alias(index=index, name=self.alias),
                       lambda: self.search.indices.put_alias(index=index, name=self.alias))

    def search_dynamic(self, element: str, _what: str) -> Iterator[Mutation]:
        index = self.live()
        yield Mutation(element, "mapping made dynamic",
                       lambda: self.search.indices.put_mapping(index=index, body={"dynamic": True}),
                       lambda: self.search.indices.put_mapping(index=index, body={"dynamic": "strict"}))

    def search_identity_index(self, element: str, _what: str) -> Iterator[Mutation]:
        index = self.contracts["search"]["identity_index"]
        meta = self.search.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
        yield Mutation(element, "identity stamp edited",
                       lambda: self.search.indices.put_mapping(index=index, body={"_meta": {
                           **meta, "kfm_identity": {**meta["kfm_identity"], "deployment_id": "mutant"}}}),
                       lambda: self.search.indices.put_mapping(index=index, body={"_meta": meta}))

    def search_setting(self, element: str, name: str) -> Iterator[Mutation]:
        index = self.live()
        current = self.search.indices.get_settings(index=index, params={"flat_settings": "true"})[index]["settings"]
        changed = {"refresh_interval": "30s"}[name]
        yield Mutation(element, f"{name} set to {changed}",
                       lambda: self.search.indices.put_settings(index=index, body={"index": {name: changed}}),
                       lambda: self.search.indices.put_settings(index=index, body={
                           "index": {name: current[f"index.{name}"]}}))

    def elsewhere(self, element: str) -> str:
        """Why ``element`` belongs to another environment than this stack's ("" when it does not)."""
        store, kind, *rest = element.split(":", 2)
        if (store, kind) == ("search", "shards") and rest and rest[0] != self.environment:
            return f"the {rest[0]} topology; this stack runs {self.environment}"
        return ""

    def search_shards(self, element: str, environment: str) -> Iterator[Mutation]:
        if environment != self.environment:  # another environment's topology: nothing on this stack to corrupt
            return
        index = self.live()
        current = self.search.indices.get_settings(index=index, params={"flat_settings": "true"})[index]["settings"]
        replicas = int(current["index.number_of_replicas"])
        yield Mutation(element, f"number_of_replicas set to {replicas + 1}",
                       lambda: self.search.indices.put_settings(index=index, body={
                           "index": {"number_of_replicas": replicas + 1}}),
                       lambda: self.search.indices.put_settings(index=index, body={
                           "index": {"number_of_replicas": replicas}}))

    def search_meta(self, element: str, name: str) -> Iterator[Mutation]:
        index = self.live()
        meta = self.search.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
        kfm = {k: v for k, v in meta["kfm"].items() if k != name}
        yield Mutation(element, f"_meta.kfm.{name} removed",
                       lambda: self.search.indices.put_mapping(index=index, body={"_meta": {**meta, "kfm": kfm}}),
                       lambda: self.search.indices.put_mapping(index=index, body={"_meta": meta}))

    def search_field(self, element: str, name: str) -> Iterator[Mutation]:
        index = self.live()
        top = name.split(".")[0]
        hit = self.search.search(index=index, body={"size": 1, "query": {"exists": {"field": top}},
                                                   "sort": [{"id": "asc"}]})["hits"]["hits"][0]
        value = hit["_source"][top]
        mutant: Any = {"type": "Point", "coordinates": [-98.0, 38.0]} if top == "geometry" else (
            not value if isinstance(value, bool) else (value + 1 if isinstance(value, int) else
                                                       "2001-01-01T00:00:00+00:00" if top.endswith("_at") or
                                                       top.endswith("datetime") else f"{value}-{MUTANT}"))

        def put(v: Any) -> Callable[[], None]:
            def write() -> None:
                self.search.update(index=index, id=hit["_id"], body={"doc": {top: v}})
                self.search.indices.refresh(index=index)
            return write

        yield Mutation(element, f"one document's {top} rewritten", put(mutant), put(value))

    # --- graph
    def cypher(self, query: str, **params: Any) -> Callable[[], None]:
        return call(self.graph.run, query, **params)

    def graph_identity_label(self, element: str, _what: str) -> Iterator[Mutation]:
        label = self.contracts["graph"]["identity_label"]
        yield Mutation(element, "identity node relabelled",
                       self.cypher(f"MATCH (n:{label}) SET n:{MUTANT} REMOVE n:{label}"),
                       self.cypher(f"MATCH (n:{MUTANT}) SET n:{label} REMOVE n:{MUTANT}"))

    def graph_label(self, element: str, label: str) -> Iterator[Mutation]:
        yield Mutation(element, "one node loses its label",
                       self.cypher(f"MATCH (n:{label}) WITH n ORDER BY n.id LIMIT 1 SET n:{MUTANT} REMOVE n:{label}"),
                       self.cypher(f"MATCH (n:{MUTANT}) SET n:{label} REMOVE n:{MUTANT}"))

    def graph_property(self, element: str, target: str) -> Iterator[Mutation]:
        label, prop = target.split(".")
        row = self.graph.run(f"MATCH (n:{label}) WHERE n.{prop} IS NOT NULL RETURN n.id AS id, n.{prop} AS v "
                             "ORDER BY n.id LIMIT 1")[0]
        value = row["v"]
        mutant = value + 1 if isinstance(value, int) else f"{value}-{MUTANT}"
        if prop == "id":
            yield Mutation(element, "one node's key rewritten",
                           self.cypher(f"MATCH (n:{label} {{id: $id}}) SET n.id = $m", id=row["id"], m=mutant),
                           self.cypher(f"MATCH (n:{label} {{id: $m}}) SET n.id = $id", id=row["id"], m=mutant))
            return
        yield Mutation(element, f"one node's {prop} rewritten",
                       self.cypher(f"MATCH (n:{label} {{id: $id}}) SET n.{prop} = $v", id=row["id"], v=mutant),
                       self.cypher(f"MATCH (n:{label} {{id: $id}}) SET n.{prop} = $v", id=row["id"], v=value))

    def graph_relationship(self, element: str, target: str) -> Iterator[Mutation]:
        start, rest = target.split("-", 1)
        rel, end = rest.split("->")
        row = self.graph.run(f"MATCH (a:{start})-[:{rel}]->(b:{end}) RETURN a.id AS a, b.id AS b "
                             "ORDER BY a, b LIMIT 1")[0]
        match = f"MATCH (a:{start} {{id: $a}}) MATCH (b:{end} {{id: $b}})"
        yield Mutation(element, "one relationship deleted",
                       self.cypher(f"{match} MATCH (a)-[r:{rel}]->(b) DELETE r", **row),
                       self.cypher(f"{match} CREATE (a)-[:{rel}]->(b)", **row))
        yield Mutation(element, "one relationship reversed",
                       self.cypher(f"{match} CREATE (b)-[:{rel} {{{MUTANT}: true}}]->(a)", **row),
                       self.cypher(f"MATCH ()-[r:{rel} {{{MUTANT}: true}}]->() DELETE r"))

    def graph_constraint(self, element: str, name: str) -> Iterator[Mutation]:
        spec = next(c for c in self.contracts["graph"]["constraints"] if c["name"] == name)
        yield Mutation(element, "constraint dropped", self.cypher(f"DROP CONSTRAINT {name} IF EXISTS"),
                       self.cypher(f"CREATE CONSTRAINT {name} IF NOT EXISTS FOR (n:{spec['label']}) "
                                   f"REQUIRE n.{spec['property']} IS UNIQUE"))

    def graph_index(self, element: str, name: str) -> Iterator[Mutation]:
        spec = next(i for i in self.contracts["graph"]["indexes"] if i["name"] == name)
        yield Mutation(element, "index dropped", self.cypher(f"DROP INDEX {name} IF EXISTS"),
                       self.cypher(f"CREATE INDEX {name} IF NOT EXISTS FOR (n:{spec['label']}) "
                                   f"ON (n.{spec['property']})"))

    # --- cache
    def keep(self, key: str) -> Callable[[], None]:
        """A restore of ``key`` as it is now (DUMP/RESTORE keeps its type, value and TTL)."""
        dumped, ttl = self.redis.dump(key), self.redis.pttl(key)
        return call(self.redis.restore, key, max(ttl, 0), dumped, replace=True)

    def first_summary(self) -> str:
        template = self.contracts["cache"]["redis"]["summary_key"]
        dataset = sorted(self.redis.smembers(self.contracts["cache"]["redis"]["index_key"]))[0]
        return template.replace("{dataset_id}", dataset)

    def cache_view(self, element: str, view: str) -> Iterator[Mutation]:
        yield Mutation(element, "view emptied (WITH NO DATA)",
                       self.sql(f"REFRESH MATERIALIZED VIEW {view} WITH NO DATA"),
                       self.sql(f"REFRESH MATERIALIZED VIEW {view}"))

    def cache_view_column(self, element: str, target: str) -> Iterator[Mutation]:
        view, column = target.rsplit(".", 1)
        yield Mutation(element, "view column renamed",
                       self.sql(f'ALTER MATERIALIZED VIEW {view} RENAME COLUMN "{column}" TO "{column}_{MUTANT}"'),
                       self.sql(f'ALTER MATERIALIZED VIEW {view} RENAME COLUMN "{column}_{MUTANT}" TO "{column}"'))

    def cache_unique_index(self, element: str, view: str) -> Iterator[Mutation]:
        name = self.contracts["cache"]["materialized_views"][view]["unique_index"]
        schema = view.split(".")[0]
        definition = self.pg.scalar("SELECT pg_get_indexdef(%s::regclass)", (f"{schema}.{name}",))
        yield Mutation(element, "unique index dropped", self.sql(f"DROP INDEX {schema}.{name}"), self.sql(definition))

    def cache_key(self, element: str, key: str, name: str) -> Iterator[Mutation]:
        yield Mutation(element, f"{name} deleted", call(self.redis.delete, key), self.keep(key))

    def cache_summary_key(self, element: str, _what: str) -> Iterator[Mutation]:
        yield from self.cache_key(element, self.first_summary(), "one summary")

    def cache_index_key(self, element: str, _what: str) -> Iterator[Mutation]:
        key = self.contracts["cache"]["redis"]["index_key"]
        member = sorted(self.redis.smembers(key))[0]
        yield Mutation(element, "one dataset left out of the index set", call(self.redis.srem, key, member),
                       call(self.redis.sadd, key, member))

    def cache_meta_key(self, element: str, _what: str) -> Iterator[Mutation]:
        yield from self.cache_key(element, self.contracts["cache"]["redis"]["meta_key"], "meta hash")

    def cache_identity_key(self, element: str, _what: str) -> Iterator[Mutation]:
        yield from self.cache_key(element, self.contracts["cache"]["redis"]["identity_key"], "identity hash")

    def cache_meta_field(self, element: str, name: str) -> Iterator[Mutation]:
        key = self.contracts["cache"]["redis"]["meta_key"]
        yield Mutation(element, f"meta field {name} deleted", call(self.redis.hdel, key, name), self.keep(key))

    def cache_summary_field(self, element: str, name: str) -> Iterator[Mutation]:
        key = self.first_summary()
        value = self.redis.hget(key, name)
        restore = self.keep(key)
        yield Mutation(element, f"summary field {name} deleted", call(self.redis.hdel, key, name), restore)
        if name not in ("built_at", "run_id"):
            yield Mutation(element, f"summary field {name} rewritten",
                           call(self.redis.hset, key, name, f"{value}-{MUTANT}"), restore)

    def cache_summary_ttl_seconds(self, element: str, _what: str) -> Iterator[Mutation]:
        key = self.first_summary()
        yield Mutation(element, "one summary never expires", call(self.redis.persist, key), self.keep(key))

    def cache_summary_ttl_min_seconds(self, element: str, _what: str) -> Iterator[Mutation]:
        key = self.first_summary()
        yield Mutation(element, "one summary about to expire", call(self.redis.expire, key, 5),
                       self.keep(key))

    def cache_maxmemory_policy(self, element: str, _what: str) -> Iterator[Mutation]:
        policy = self.redis.config_get("maxmemory-policy")["maxmemory-policy"]
        yield Mutation(element, "eviction policy allkeys-random",
                       call(self.redis.config_set, "maxmemory-policy", "allkeys-random"),
                       call(self.redis.config_set, "maxmemory-policy", policy))

    # --- what no store holds: the deployment's contract copy
    def contract_side(self, element: str, store: str, kind: str) -> Iterator[Mutation]:
        edits: dict[str, Callable[[dict[str, Any]], None]] = {
            "postgis:min_server_version": lambda c: c.update(min_server_version=990000),
            "postgis:min_postgis_version": lambda c: c.update(min_postgis_version="99.1"),
            "search:index_prefix": lambda c: c.update(index_prefix=f"{MUTANT}-v"),
            "policy:bundle": lambda c: c["bundle"].update(name=MUTANT),
            "policy:item_gate.decision": lambda c: c["item_gate"].update(decision=f"kfm/{MUTANT}/decision"),
            "policy:item_gate.input": lambda c: c["item_gate"].update(input=MUTANT),
            "policy:item_gate.allow": lambda c: c["item_gate"].update(allow=MUTANT),
            "policy:item_gate.deny": lambda c: c["item_gate"].update(deny=MUTANT),
            "policy:item_gate.batch": lambda c: c["item_gate"]["batch"].update(input=MUTANT),
            "policy:sensitivity.grid_degrees": lambda c: c["sensitivity"].update(grid_degrees=f"kfm/{MUTANT}/grid"),
        }
        key = f"{store}:{kind}"
        if key in edits:
            yield Mutation(element, "the deployment's contract disagrees with the store", noop, noop,
                           contract=(store, edits[key]))


@contextlib.contextmanager
def contract_copy(change: tuple[str, Callable[[dict[str, Any]], None]] | None) -> Iterator[dict[str, str]]:
    if change is None:
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="kfm-mutant-contracts-"))
    try:
        shutil.copytree(contracts.BUILTIN, folder / "contracts")
        path = folder / "contracts" / f"{change[0]}.json"
        data = json.loads(path.read_text())
        change[1](data)
        path.write_text(json.dumps(data))
        yield {"KFM_CONTRACTS_DIR": str(folder / "contracts")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def failing(results: dict[str, Any]) -> list[str]:
    return sorted(n.split("::", 1)[1] for n, r in results.items() if r.outcome in ("failed", "error"))


def watchers() -> dict[str, set[str]]:
    """{contract element: the services whose checks run for its mutations}: the element's own store, and the
    services of every check that covers it (a cache view lives in PostgreSQL, and its checks are marked so)."""
    from tests.test_proofs_complete import _checks_and_proofs, coverage  # the one collection docs/checks.md uses

    with tempfile.TemporaryDirectory(prefix="kfm-mutation-") as tmp:
        checks, _proofs = _checks_and_proofs(Path(tmp))
    services = {nodeid.split("::")[-1]: set(info["services"]) for nodeid, info in checks.items()}
    covered, _idle = coverage(checks)
    return {element: {element.split(":")[0]}.union(*(services[c] for c in by)) for element, by in covered.items()}


def run(mutation: Mutation, markers: set[str]) -> Outcome:
    try:
        mutation.inject()
    except Exception as exc:  # noqa: BLE001 — the store refused the corruption: it enforces the element itself
        with contextlib.suppress(Exception):
            mutation.restore()
        return Outcome(mutation.element, mutation.name, "enforced", note=str(exc).splitlines()[0][:200])
    try:
        with contract_copy(mutation.contract) as env:
            results = run_checks("opschecks", "-m", " or ".join(sorted(markers)), env=env, timeout=600)
    finally:
        mutation.restore()
    found = failing(results)
    return Outcome(mutation.element, mutation.name, "caught" if found else "missed", found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="*", help="a pattern over element names (default: all)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "mutation.json"))
    args = parser.parse_args()
    os.environ.setdefault("KFM_ENV_FILE", str(ROOT / ".env.example"))
    healthy = failing(run_checks("opschecks", timeout=900))
    if healthy:
        raise SystemExit(f"the healthy stack fails checks, fix that first: {healthy}")
    hub = ServiceHub(load_settings(), writes_allowed=True, application_name="kfm-bench-mutation")
    outcomes: list[Outcome] = []
    started = time.monotonic()
    selected = fnmatch.filter(elements(), args.only)
    markers = watchers()
    try:
        families = Families(hub)
        for element in selected:
            made = list(families.of(element))
            if not made and (other := families.elsewhere(element)):
                outcomes.append(Outcome(element, "-", "elsewhere", note=other))
            elif not made:
                outcomes.append(Outcome(element, "-", "missed", note="no corruption family for this element"))
            for mutation in made:
                outcome = run(mutation, markers[element])
                outcomes.append(outcome)
                print(f"[mutation] {outcome.result:8} {element}: {mutation.name} {outcome.failing[:3]}", flush=True)
    finally:
        hub.close()
    after = failing(run_checks("opschecks", timeout=900))
    seconds = round(time.monotonic() - started)
    out = Path(args.out)
    if args.only != "*" and out.is_file():  # a partial run replaces its elements' outcomes in the whole run
        whole = json.loads(out.read_text())
        known = elements()  # an element the contracts no longer have leaves the score with its outcomes
        kept = [Outcome(**o) for o in whole["outcomes"] if o["element"] in known and o["element"] not in selected]
        outcomes = sorted(kept + outcomes, key=lambda o: known.index(o.element))
        seconds += whole["seconds"]
        pattern = f"{whole['pattern']}, then {args.only} again"
    else:
        pattern = args.only
    scored = [o for o in outcomes if o.result in ("caught", "missed")]
    caught = sum(o.result == "caught" for o in scored)
    out.write_text(json.dumps({
        "measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "seconds": seconds,
        "pattern": pattern, "caught": caught, "scored": len(scored), "healthy_after": not after,
        "failing_after": after, "outcomes": [o.__dict__ for o in outcomes]}, indent=1) + "\n")
    print(f"[mutation] {caught}/{len(scored)} caught ({caught / max(len(scored), 1):.1%}); "
          f"{sum(o.result == 'enforced' for o in outcomes)} enforced by the stores, "
          f"{sum(o.result == 'elsewhere' for o in outcomes)} of other environments; healthy after: {not after}")
    if after:
        raise SystemExit(f"the stack is not healthy after the mutations: {after}")


if __name__ == "__main__":
    main()
