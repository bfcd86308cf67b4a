"""Proofs of the contract checks: break the contract in the local stack, see the check fail, restore."""

from __future__ import annotations

from typing import Any

import pytest

from kfm_ops import contracts
from kfm_ops.stores.cache import summary_key
from tests.helpers import run_checks
from tests.plugins.baselines import create_constraint, restore_constraint
from tests.plugins.faults import injected
from tests.proving import PROOF, assert_fails

pytestmark = pytest.mark.devstack

PG = "opschecks/contract/test_postgis_schema.py::"
SEARCH = "opschecks/contract/test_search_mapping.py::"
GRAPH = "opschecks/contract/test_graph_schema.py::"
CACHE = "opschecks/contract/test_cache_contract.py::"


# --------------------------------------------------------------------------- PostGIS schema

@pytest.mark.proves(PG + "test_postgis_tables_and_columns")
def test_column_type_drift_and_extra_column(pg_baseline: Any) -> None:
    def drift() -> None:
        pg_baseline.execute("ALTER TABLE kfm.prov_activities ALTER COLUMN software TYPE varchar(200)")
        pg_baseline.execute(f"ALTER TABLE kfm.prov_activities ADD COLUMN {PROOF.replace('-', '_')}_extra text")

    def restore() -> None:
        pg_baseline.execute("ALTER TABLE kfm.prov_activities DROP COLUMN IF EXISTS kfm_proof_extra")
        pg_baseline.execute("ALTER TABLE kfm.prov_activities ALTER COLUMN software TYPE text")

    with injected(drift, restore):
        assert_fails(PG + "test_postgis_tables_and_columns", "schema differences from postgis.json",
                     "kfm.prov_activities.software (character varying(200), contract text)",
                     "kfm.prov_activities.kfm_proof_extra (not in contract)")


@pytest.mark.proves(PG + "test_postgis_geometry_columns")
def test_geometry_column_wrong_srid(pg_baseline: Any) -> None:
    def to_srid(srid: int) -> None:
        pg_baseline.execute(f"ALTER TABLE kfm.places ALTER COLUMN geom TYPE geometry(Geometry, {srid}) "
                            f"USING ST_SetSRID(geom, {srid})")

    with injected(lambda: to_srid(3857), lambda: to_srid(4326)):
        assert_fails(PG + "test_postgis_geometry_columns", "kfm.places.geom (SRID 3857", "contract SRID 4326")


@pytest.mark.proves(PG + "test_postgis_gist_indexes")
def test_gist_index_dropped(pg_baseline: Any) -> None:
    rows = pg_baseline.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = 'kfm.places'::regclass AND am.amname = 'gist'"
    ).fetchall()
    assert rows, "kfm.places has no GiST index to drop"
    with injected(lambda: [pg_baseline.execute(f'DROP INDEX kfm."{name}"') for name, _ in rows],
                  lambda: [pg_baseline.execute(definition) for _, definition in rows]):
        assert_fails(PG + "test_postgis_gist_indexes", "no valid GiST index", "kfm.places.geom")


@pytest.mark.proves(PG + "test_postgis_primary_keys")
def test_primary_key_dropped(pg_baseline: Any) -> None:
    name, definition = pg_baseline.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'kfm.prov_links'::regclass AND contype = 'p'").fetchone()
    with injected(lambda: pg_baseline.execute(f'ALTER TABLE kfm.prov_links DROP CONSTRAINT "{name}"'),
                  lambda: pg_baseline.execute(f'ALTER TABLE kfm.prov_links ADD CONSTRAINT "{name}" {definition}')):
        assert_fails(PG + "test_postgis_primary_keys", "kfm.prov_links (primary key none",
                     "contract ['subject', 'relation', 'object']")


@pytest.mark.proves(PG + "test_postgis_geometries_valid")
def test_invalid_geometry_inserted(pg_baseline: Any) -> None:
    bad_id = f"{PROOF}-bowtie"
    with injected(lambda: pg_baseline.execute(
            "INSERT INTO kfm.places (id, name, kind, geom) VALUES (%s, 'proof bowtie', 'proof', "
            "ST_GeomFromText('POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))', 4326))", (bad_id,)),
            lambda: pg_baseline.execute("DELETE FROM kfm.places WHERE id = %s", (bad_id,))):
        assert_fails(PG + "test_postgis_geometries_valid", "invalid or not SRID 4326", "kfm.places",
                     f"{bad_id} (Self-intersection")


@pytest.mark.proves(PG + "test_postgis_geometries_in_extent")
def test_projected_and_foreign_geometries(pg_baseline: Any, contracts_copy: Any) -> None:
    """Valid geometries with the right SRID that are still wrong: Web-Mercator metres stored as degrees (outside
    the CRS range) and a place in Paris (outside Kansas); then a deployment whose declared extent is elsewhere."""
    mercator, paris = f"{PROOF}-mercator", f"{PROOF}-paris"

    def drift() -> None:
        pg_baseline.execute("INSERT INTO kfm.places (id, name, kind, geom) VALUES "
                            "(%s, 'proof metres', 'proof', ST_SetSRID(ST_MakePoint(-10880000, 4650000), 4326)), "
                            "(%s, 'proof paris', 'proof', ST_SetSRID(ST_MakePoint(2.35, 48.85), 4326))",
                            (mercator, paris))

    with injected(drift, lambda: pg_baseline.execute("DELETE FROM kfm.places WHERE id IN (%s, %s)",
                                                     (mercator, paris))):
        assert_fails(PG + "test_postgis_geometries_in_extent", "2 geometries in kfm.places",
                     f"{mercator} (outside the CRS range", f"{paris} (outside Kansas")
    env = contracts_copy("postgis", lambda c: c["extent"].update(name="Bavaria", bbox=[8.9, 47.2, 13.9, 50.6]))
    assert_fails(PG + "test_postgis_geometries_in_extent", "geometries in kfm.items", "outside Bavaria", env=env)


@pytest.mark.proves(PG + "test_kfm_ops_migrations_applied")
def test_migration_not_applied_and_edited(pg_baseline: Any) -> None:
    first, last = contracts.migrations()[0].name, contracts.migrations()[-1].name
    saved = pg_baseline.rows("SELECT name, checksum, applied_at FROM kfm_ops.schema_migrations WHERE name IN (%s, %s)",
                             (first, last))

    def drift() -> None:
        pg_baseline.execute("DELETE FROM kfm_ops.schema_migrations WHERE name = %s", (last,))
        pg_baseline.execute("UPDATE kfm_ops.schema_migrations SET checksum = 'edited' WHERE name = %s", (first,))

    def restore() -> None:
        pg_baseline.execute("DELETE FROM kfm_ops.schema_migrations WHERE name IN (%s, %s)", (first, last))
        for row in saved:
            pg_baseline.execute("INSERT INTO kfm_ops.schema_migrations (name, checksum, applied_at) "
                                "VALUES (%s, %s, %s)", row)

    with injected(drift, restore):
        assert_fails(PG + "test_kfm_ops_migrations_applied", "2 kfm-ops migrations are not applied as written",
                     f"{last} (not applied)", f"{first} (applied with checksum edited")


# --------------------------------------------------------------------------- search mapping

@pytest.fixture
def alias_swapped_to(search_writer: Any, search_baseline: str) -> Any:
    """swap(suffix, mappings, docs, shards=1): point the contract alias at a proof index; swapped back and deleted
    after."""
    alias = contracts.load("search")["alias"]
    state: dict[str, Any] = {}

    def swap(suffix: str, mappings: dict[str, Any], docs: list[dict[str, Any]], shards: int = 1) -> str:
        name = f"{PROOF}-{suffix}"
        search_writer.indices.create(index=name, body={"settings": {"number_of_shards": shards,
                                                                    "number_of_replicas": 0},
                                                       "mappings": mappings})
        for i, doc in enumerate(docs):
            search_writer.index(index=name, id=f"{PROOF}-{i}", body=doc, refresh=True)
        state["before"] = sorted(search_writer.indices.get_alias(name=alias))
        state["index"] = name
        search_writer.indices.update_aliases(body={"actions": [
            *({"remove": {"index": old, "alias": alias}} for old in state["before"]),
            {"add": {"index": name, "alias": alias}}]})
        return name

    yield swap
    if "index" in state:
        search_writer.indices.update_aliases(body={"actions": [
            {"remove": {"index": state["index"], "alias": alias}},
            *({"add": {"index": old, "alias": alias}} for old in state["before"])]})
        search_writer.indices.delete(index=state["index"], ignore_unavailable=True)


@pytest.mark.proves(SEARCH + "test_search_mapping_matches_contract")
def test_dynamically_added_field(alias_swapped_to: Any) -> None:
    """The alias points at an index whose mapping is dynamic and grew an unmapped field from a document."""
    mappings = {**contracts.load("search")["mappings"], "dynamic": True}
    name = alias_swapped_to("dynamic", mappings, [{"id": f"{PROOF}-doc", "unmapped_extra": "grew the mapping"}])
    assert_fails(SEARCH + "test_search_mapping_matches_contract", name, "dynamic=true")


@pytest.mark.proves(SEARCH + "test_search_mapping_matches_contract")
def test_unmapped_field_and_geo_point(alias_swapped_to: Any) -> None:
    """A strict index, but with an extra field and geometry mapped as geo_point."""
    contract = contracts.load("search")["mappings"]
    properties = {**contract["properties"], "geometry": {"type": "geo_point"}, "unmapped_extra": {"type": "keyword"}}
    name = alias_swapped_to("geopoint", {"dynamic": "strict", "properties": properties}, [])
    assert_fails(SEARCH + "test_search_mapping_matches_contract", name, "geometry is mapped as geo_point")


@pytest.mark.proves(SEARCH + "test_search_mapping_matches_contract")
def test_extra_field_in_strict_mapping(alias_swapped_to: Any) -> None:
    contract = contracts.load("search")["mappings"]
    properties = {**contract["properties"], "unmapped_extra": {"type": "keyword"}}
    name = alias_swapped_to("extra", {"dynamic": "strict", "properties": properties}, [])
    assert_fails(SEARCH + "test_search_mapping_matches_contract", name, "1 fields not in the contract",
                 "+unmapped_extra")


@pytest.mark.proves(SEARCH + "test_search_index_topology_matches_contract")
def test_live_index_replicas_changed_by_hand(search_writer: Any, search_baseline: str) -> None:
    """Someone raised the live index's replicas beyond the dev topology (1 primary, 0 replicas)."""
    def replicas(n: int) -> None:
        search_writer.indices.put_settings(index=search_baseline, body={"index": {"number_of_replicas": n}})

    with injected(lambda: replicas(1), lambda: replicas(0)):
        assert_fails(SEARCH + "test_search_index_topology_matches_contract", "differ from the dev topology",
                     f"{search_baseline} (1 primaries, 1 replicas)")


@pytest.mark.proves(SEARCH + "test_search_index_topology_matches_contract")
def test_live_index_with_other_primaries(alias_swapped_to: Any) -> None:
    """The alias points at an index built with 2 primaries, where the dev topology says 1."""
    name = alias_swapped_to("primaries", contracts.load("search")["mappings"], [], shards=2)
    assert_fails(SEARCH + "test_search_index_topology_matches_contract", f"{name} (2 primaries, 0 replicas)")


# --------------------------------------------------------------------------- graph constraints

@pytest.mark.proves(GRAPH + "test_graph_constraints_match_contract")
def test_constraint_on_wrong_property(graph_baseline: Any) -> None:
    activity = next(c for c in contracts.load("graph")["constraints"] if c["name"] == "kfm_activity_id")

    def misplace() -> None:
        graph_baseline.run("DROP CONSTRAINT kfm_activity_id")
        graph_baseline.run(create_constraint(activity, prop="kfm_proof_key"))

    with injected(misplace, lambda: restore_constraint(graph_baseline, "kfm_activity_id")):
        assert_fails(GRAPH + "test_graph_constraints_match_contract",
                     "kfm_activity_id (UNIQUENESS on :Activity(kfm_proof_key), contract UNIQUENESS on :Activity(id))")


@pytest.mark.proves(GRAPH + "test_graph_constraints_match_contract")
def test_constraint_missing(graph_baseline: Any) -> None:
    with injected(lambda: graph_baseline.run("DROP CONSTRAINT kfm_item_id"),
                  lambda: restore_constraint(graph_baseline, "kfm_item_id")):
        assert_fails(GRAPH + "test_graph_constraints_match_contract", "kfm_item_id (missing")


# --------------------------------------------------------------------------- cache

@pytest.mark.proves(CACHE + "test_cache_matview_populated")
def test_matview_not_populated(matview_baseline: Any) -> None:
    with injected(lambda: matview_baseline.execute("REFRESH MATERIALIZED VIEW kfm_cache.dataset_stats WITH NO DATA"),
                  lambda: matview_baseline.execute("REFRESH MATERIALIZED VIEW kfm_cache.dataset_stats")):
        assert_fails(CACHE + "test_cache_matview_populated", "kfm_cache.dataset_stats is not populated")


@pytest.mark.proves(CACHE + "test_cache_matview_populated")
def test_matview_unique_index_dropped(matview_baseline: Any) -> None:
    definition = matview_baseline.scalar("SELECT pg_get_indexdef('kfm_cache.dataset_stats_pk'::regclass)")
    with injected(lambda: matview_baseline.execute("DROP INDEX kfm_cache.dataset_stats_pk"),
                  lambda: matview_baseline.execute(definition)):
        assert_fails(CACHE + "test_cache_matview_populated", "unique index kfm_cache.dataset_stats_pk is missing")


def summary_fields(dataset_id: str) -> dict[str, str]:
    return {f: dataset_id if f == "dataset_id" else f"{PROOF}-{f}"
            for f in contracts.load("cache")["redis"]["summary_fields"]}


@pytest.mark.proves(CACHE + "test_cache_summary_keys")
def test_summary_key_without_ttl(cache_baseline: Any) -> None:
    key = summary_key(contracts.load("cache")["redis"]["summary_key"], f"{PROOF}-nottl")
    with injected(lambda: cache_baseline.hset(key, mapping=summary_fields(f"{PROOF}-nottl")),
                  lambda: cache_baseline.delete(key)):
        assert_fails(CACHE + "test_cache_summary_keys", "TTL outside", f"{key} (TTL none)")


@pytest.mark.proves(CACHE + "test_cache_summary_keys")
def test_summary_key_missing_fields(cache_baseline: Any) -> None:
    redis_contract = contracts.load("cache")["redis"]
    key = summary_key(redis_contract["summary_key"], f"{PROOF}-partial")
    fields = summary_fields(f"{PROOF}-partial")
    del fields["content_hash"]

    def partial() -> None:
        cache_baseline.hset(key, mapping=fields)
        cache_baseline.expire(key, redis_contract["summary_ttl_seconds"])

    with injected(partial, lambda: cache_baseline.delete(key)):
        assert_fails(CACHE + "test_cache_summary_keys", "lack contract fields", f"{key} (hash; missing content_hash)")


@pytest.mark.proves(CACHE + "test_cache_meta_hash")
def test_meta_hash_field_deleted(cache_baseline: Any, redis_snapshot: Any) -> None:
    key = contracts.load("cache")["redis"]["meta_key"]
    redis_snapshot(key)
    cache_baseline.hdel(key, "generation")
    assert_fails(CACHE + "test_cache_meta_hash", f"{key} lacks 1 contract fields", "generation")


@pytest.mark.proves(CACHE + "test_cache_meta_hash")
def test_meta_hash_missing(cache_baseline: Any, redis_snapshot: Any) -> None:
    key = contracts.load("cache")["redis"]["meta_key"]
    redis_snapshot(key)
    cache_baseline.delete(key)
    assert_fails(CACHE + "test_cache_meta_hash", f"{key} is missing", "kfm-maint cache rebuild")


def test_health_and_contract_checks_pass_on_baseline(matview_baseline: Any, search_baseline: str,
                                                     graph_baseline: Any, cache_baseline: Any) -> None:
    """With the contract state in place (and no fault injected) every health and contract check passes,
    so each proof above fails its check because of the fault alone."""
    results = run_checks("opschecks/health", "opschecks/contract")
    bad = {nodeid: f"{r.outcome}: {r.message[:300]}" for nodeid, r in results.items() if r.outcome != "passed"}
    assert len(results) >= 30 and not bad, bad
