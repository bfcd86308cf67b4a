"""The canonical PostGIS schema matches postgis.json, and every stored geometry is valid in SRID 4326."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from kfm_ops import contracts
from kfm_ops.pytest_plugin.assertions import expect, first_n
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.settings import Settings
from kfm_ops.stores.postgis import PostgisStore

MIGRATE_HINT = "run `kfm-maint migrate` (the schema is kfm_ops/contracts/postgis/*.sql)"
GEOMETRY_TABLES = ("kfm.items", "kfm.places")


def _tables(kfm_contract: ContractLoader) -> dict[str, Any]:
    return kfm_contract("postgis")["tables"]  # type: ignore[no-any-return]


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("postgis:table:*", "postgis:column:*")
def test_postgis_tables_and_columns(postgis: PostgisStore, kfm_contract: ContractLoader) -> None:
    """Every contract table exists with exactly the contract's columns and types (format_type)."""
    where = postgis.where()
    problems: list[str] = []
    for table, spec in _tables(kfm_contract).items():
        live = dict(postgis.rows("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                          "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
                          (table,)))
        if not live:
            problems.append(f"{table} (table missing)")
            continue
        for column, wanted in spec["columns"].items():
            if column not in live:
                problems.append(f"{table}.{column} (missing)")
            elif live[column].split("(", 1)[0] != wanted:
                problems.append(f"{table}.{column} ({live[column]}, contract {wanted})")
        problems += [f"{table}.{column} (not in contract)" for column in sorted(set(live) - set(spec["columns"]))]
    expect(not problems, f"{len(problems)} schema differences from postgis.json", where, problems, hint=MIGRATE_HINT)


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("postgis:geometry:*", "postgis:srid")
def test_postgis_geometry_columns(postgis: PostgisStore, kfm_contract: ContractLoader) -> None:
    """Every contract geometry column is registered in geometry_columns with the contract SRID and type."""
    where = postgis.where()
    problems: list[str] = []
    for table, spec in _tables(kfm_contract).items():
        schema, name = table.split(".")
        for column, wanted in spec.get("geometry_columns", {}).items():
            rows = postgis.rows("SELECT srid, type FROM geometry_columns WHERE f_table_schema = %s "
                                "AND f_table_name = %s AND f_geometry_column = %s", (schema, name, column))
            if not rows:
                problems.append(f"{table}.{column} (not a geometry column)")
            elif (rows[0][0], rows[0][1].upper()) != (wanted["srid"], wanted["type"].upper()):
                problems.append(f"{table}.{column} (SRID {rows[0][0]} {rows[0][1]}, "
                                f"contract SRID {wanted['srid']} {wanted['type']})")
    expect(not problems, f"{len(problems)} geometry columns differ from postgis.json", where, problems,
           hint=MIGRATE_HINT)


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("postgis:gist_index:*")
def test_postgis_gist_indexes(postgis: PostgisStore, kfm_contract: ContractLoader) -> None:
    """Every contract geometry column has a valid GiST index (pg_index / pg_am)."""
    where = postgis.where()
    missing: list[str] = []
    for table, spec in _tables(kfm_contract).items():
        for column in spec.get("gist_indexes", []):
            rows = postgis.rows("SELECT i.indexrelid::regclass::text FROM pg_index i "
                                "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
                                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                                "WHERE i.indrelid = to_regclass(%s) AND am.amname = 'gist' AND a.attname = %s "
                                "AND i.indisvalid AND i.indpred IS NULL", (table, column))
            if not rows:
                missing.append(f"{table}.{column}")
    expect(not missing, f"{len(missing)} geometry columns have no valid GiST index", where, missing,
           hint=f"spatial queries scan whole tables; {MIGRATE_HINT} recreates it")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("postgis:primary_key:*")
def test_postgis_primary_keys(postgis: PostgisStore, kfm_contract: ContractLoader) -> None:
    """Every contract table has the contract's primary key, columns in order."""
    where = postgis.where()
    problems: list[str] = []
    for table, spec in _tables(kfm_contract).items():
        rows = postgis.rows("SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_constraint con "
                            "CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) "
                            "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum "
                            "WHERE con.conrelid = to_regclass(%s) AND con.contype = 'p'", (table,))
        live = list(rows[0][0] or []) if rows else []
        if live != spec["primary_key"]:
            problems.append(f"{table} (primary key {live or 'none'}, contract {spec['primary_key']})")
    expect(not problems, f"{len(problems)} primary keys differ from postgis.json", where, problems, hint=MIGRATE_HINT)


@pytest.mark.risk("medium")
@pytest.mark.covers("postgis:srid")
def test_postgis_geometries_valid(postgis: PostgisStore, kfm_contract: ContractLoader) -> None:
    """Every geometry in kfm.items and kfm.places is valid (ST_IsValid) and has the contract SRID."""
    srid = kfm_contract("postgis")["srid"]
    for table in GEOMETRY_TABLES:
        where = postgis.where(f"table {table}")
        bad = postgis.rows(f"SELECT id, count(*) OVER (), CASE WHEN ST_SRID(geom) <> %s "
                           f"THEN 'SRID ' || ST_SRID(geom) ELSE ST_IsValidReason(geom) END FROM {table} "
                           f"WHERE ST_SRID(geom) <> %s OR NOT ST_IsValid(geom) ORDER BY id LIMIT %s",
                           (srid, srid, first_n()))
        total = bad[0][1] if bad else 0
        expect(not bad, f"{total} geometries in {table} are invalid or not SRID {srid}", where,
               [f"{row_id} ({reason})" for row_id, _n, reason in bad], total=total,
               hint="fix the geometries at the source pipeline (ST_MakeValid) and re-ingest; "
               "then `kfm-maint reindex --targets search,graph`")


@pytest.mark.risk("medium")
@pytest.mark.covers("postgis:extent")
def test_postgis_geometries_in_extent(postgis: PostgisStore, kfm_contract: ContractLoader) -> None:
    """Every geometry in kfm.items and kfm.places lies within its CRS's range and touches the declared extent.

    A valid geometry with the right SRID can still be wrong: Web-Mercator metres stored as degrees,
    swapped axes, a sign lost. Its bounding box then leaves the CRS's range or the deployment's
    extent (``extent`` in postgis.json: Kansas for the sample; a deployment sets its own).
    """
    name, (ex0, ey0, ex1, ey1), (cx0, cy0, cx1, cy1) = contracts.extent(kfm_contract("postgis"))
    for table in GEOMETRY_TABLES:
        where = postgis.where(f"table {table}")
        bad = postgis.rows(
            f"""SELECT id, count(*) OVER (), CASE
                  WHEN ST_XMin(geom) < %(cx0)s OR ST_YMin(geom) < %(cy0)s OR ST_XMax(geom) > %(cx1)s
                       OR ST_YMax(geom) > %(cy1)s THEN 'outside the CRS range'
                  ELSE 'outside ' || %(name)s END, ST_AsText(ST_Envelope(geom))
                FROM {table}
                WHERE geom IS NOT NULL
                  AND NOT (geom && ST_MakeEnvelope(%(ex0)s, %(ey0)s, %(ex1)s, %(ey1)s, ST_SRID(geom))
                  AND ST_XMin(geom) >= %(cx0)s AND ST_YMin(geom) >= %(cy0)s AND ST_XMax(geom) <= %(cx1)s
                  AND ST_YMax(geom) <= %(cy1)s)
                ORDER BY id LIMIT %(n)s""",
            {"cx0": cx0, "cy0": cy0, "cx1": cx1, "cy1": cy1, "ex0": ex0, "ey0": ey0, "ex1": ex1, "ey1": ey1,
             "name": name, "n": first_n()})
        total = bad[0][1] if bad else 0
        expect(not bad, f"{total} geometries in {table} lie outside their CRS range or {name}", where,
               [f"{row_id} ({reason}: {box[:80]})" for row_id, _n, reason, box in bad], total=total,
               hint="look for projected coordinates stored as degrees or swapped axes at the source pipeline; "
               "fix and re-ingest, then `kfm-maint sync`")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("postgis:migration:*", "postgis:state:kfm_ops.schema_migrations")
def test_kfm_ops_migrations_applied(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """Every kfm-ops migration is recorded in kfm_ops.schema_migrations with the checksum of its file."""
    where = postgis.where("table kfm_ops.schema_migrations")
    expect(postgis.exists("kfm_ops.schema_migrations"), "the kfm_ops schema has never been migrated", where,
           hint="run `kfm-maint migrate`")
    applied = dict(postgis.rows("SELECT name, checksum FROM kfm_ops.schema_migrations"))
    problems = []
    for path in contracts.migrations(kfm_settings.contracts_dir):
        checksum = hashlib.sha256(path.read_text(encoding="utf-8").encode()).hexdigest()
        if path.name not in applied:
            problems.append(f"{path.name} (not applied)")
        elif applied[path.name] != checksum:
            problems.append(f"{path.name} (applied with checksum {applied[path.name][:12]}…, the file is "
                            f"{checksum[:12]}…)")
    expect(not problems, f"{len(problems)} kfm-ops migrations are not applied as written", where, problems,
           hint="pending: `kfm-maint migrate`; a changed checksum means an applied migration file was edited — "
           "restore it and add a new migration instead")
