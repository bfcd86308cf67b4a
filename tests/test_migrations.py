"""Migration 010 redefines the stats view on a database that already holds it (every deployment but a fresh
one): the same rows, the grants it had, filled only if it was filled. Migration 011 rewrites kfm_ops.generalize
so PostgreSQL inlines it: the same grid cell, and no function call left in the plans that use it."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from kfm_ops import contracts
from kfm_ops.stores.postgis import PostgisStore

pytestmark = pytest.mark.devstack

VIEW = "kfm_cache.dataset_stats"


def redefine(owner_pg: PostgisStore) -> None:
    sql = next(p for p in contracts.migrations() if p.name.startswith("010_")).read_text(encoding="utf-8")
    with owner_pg.transaction():
        owner_pg.execute(sql)


def rows(owner_pg: PostgisStore) -> list[tuple[object, ...]]:
    return sorted(owner_pg.rows(f"SELECT dataset_id, item_count, restricted_count, ST_AsText(extent), "
                                f"newest_update FROM {VIEW}"))


def grants(owner_pg: PostgisStore) -> set[tuple[str, str]]:
    return {(str(grantee), str(privilege)) for grantee, privilege in owner_pg.rows(
        "SELECT a.grantee::regrole::text, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a "
        "WHERE c.oid = %s::regclass", (VIEW,))}


def populated(owner_pg: PostgisStore) -> bool:
    return bool(owner_pg.scalar("SELECT ispopulated FROM pg_matviews "
                                "WHERE schemaname = 'kfm_cache' AND matviewname = 'dataset_stats'"))


@pytest.fixture
def granted_to_public(owner_pg: PostgisStore) -> Iterator[None]:
    """The view also readable by PUBLIC (a grant no default privilege gives back), filled; both undone after."""
    owner_pg.execute(f"REFRESH MATERIALIZED VIEW {VIEW}")
    owner_pg.execute(f"GRANT SELECT ON {VIEW} TO PUBLIC")
    try:
        yield
    finally:
        owner_pg.execute(f"REVOKE SELECT ON {VIEW} FROM PUBLIC")
        owner_pg.execute(f"REFRESH MATERIALIZED VIEW {VIEW}")


@pytest.mark.usefixtures("granted_to_public")
def test_redefining_the_filled_stats_view_keeps_its_rows_and_grants(owner_pg: PostgisStore) -> None:
    before_rows, before_grants = rows(owner_pg), grants(owner_pg)
    assert before_rows and ("-", "SELECT") in before_grants  # aclexplode names PUBLIC (grantee 0) "-"
    redefine(owner_pg)
    assert populated(owner_pg)
    assert grants(owner_pg) == before_grants
    assert rows(owner_pg) == before_rows


@pytest.mark.usefixtures("granted_to_public")
def test_redefining_an_empty_stats_view_leaves_it_empty(owner_pg: PostgisStore) -> None:
    owner_pg.execute(f"REFRESH MATERIALIZED VIEW {VIEW} WITH NO DATA")
    redefine(owner_pg)
    assert not populated(owner_pg)  # a first `cache rebuild` fills it, as on a fresh database


@pytest.mark.parametrize(("wkt", "grid"), [
    ("POINT(-97.33 38.27)", 0.1),  # west and north: floor goes away from zero on x, towards it on y
    ("POINT(0.05 -0.05)", 0.1),
    ("POLYGON((-101 37, -99.5 37, -99.5 38.5, -101 38.5, -101 37))", 0.5),  # the centroid's cell, not the bbox's
    ("LINESTRING(-95.2 39.1, -94.6 39.9)", 1.0),
])
def test_generalize_is_the_grid_cell_holding_the_centroid(owner_pg: PostgisStore, wkt: str, grid: float) -> None:
    x, y = owner_pg.rows("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(ST_GeomFromText(%s, 4326)) AS c) s",
                         (wkt,))[0]
    west, south = math.floor(x / grid) * grid, math.floor(y / grid) * grid
    cell = owner_pg.rows("SELECT ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g), ST_SRID(g), ST_NPoints(g) FROM "
                         "(SELECT kfm_ops.generalize(ST_GeomFromText(%s, 4326), %s) AS g) s", (wkt, grid))[0]
    assert cell == (west, south, west + grid, south + grid, 4326, 5)
    assert owner_pg.scalar("SELECT kfm_ops.generalize(NULL, 0.1) IS NULL")


def test_generalize_is_inlined_into_the_queries_that_call_it(owner_pg: PostgisStore) -> None:
    plan = "\n".join(r[0] for r in owner_pg.rows(
        "EXPLAIN VERBOSE SELECT kfm_ops.generalize(geom, 0.1) FROM kfm.items WHERE sensitivity = 'restricted'"))
    assert "st_makeenvelope" in plan.lower()
    assert "kfm_ops.generalize" not in plan, plan
