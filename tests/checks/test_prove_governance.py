"""Proofs of the governance and cross-store checks: each injects its fault into the real stack.

Every test changes one thing, runs the targeted check in a separate pytest
process, asserts it FAILS naming the fault, and restores what it changed. The
stack must be the derived sample catalog (`make catalog`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kfm_ops import buckets
from kfm_ops.stores.postgis import PUBLISHED_ITEMS
from tests.plugins.faults import documents_deleted, injected
from tests.proving import assert_fails, assert_passes

pytestmark = pytest.mark.devstack

GOV = "opschecks/governance/test_publication.py::"
SEN = "opschecks/governance/test_sensitivity.py::"
CON = "opschecks/consistency/test_cross_store.py::"
ALIAS = "kfm-items"


def _published_item(owner_pg: Any, sensitivity: str = "public") -> str:
    row = owner_pg.execute(f"SELECT id FROM {PUBLISHED_ITEMS} WHERE sensitivity = %s ORDER BY id LIMIT 1",
                           (sensitivity,)).fetchone()
    assert row, "the sample catalog is not loaded"
    return str(row[0])


@pytest.fixture
def item(owner_pg: Any) -> str:
    return _published_item(owner_pg)


@pytest.mark.proves(GOV + "test_published_items_pass_stac_gate")
def test_item_without_spec_hash_fails_the_stac_gate(owner_pg: Any, item: str) -> None:
    stac = owner_pg.execute("SELECT stac FROM kfm.items WHERE id = %s", (item,)).fetchone()[0]
    broken = json.loads(json.dumps(stac))
    del broken["properties"]["kfm:spec_hash"]
    broken["assets"]["data"]["href"] = "s3://kfm/raw/leak.tif"
    with injected(lambda: owner_pg.execute("UPDATE kfm.items SET stac = %s WHERE id = %s", (json.dumps(broken), item)),
                  lambda: owner_pg.execute("UPDATE kfm.items SET stac = %s WHERE id = %s", (json.dumps(stac), item))):
        assert_fails(GOV + "test_published_items_pass_stac_gate", item, "kfm:spec_hash")
    assert_passes(GOV + "test_published_items_pass_stac_gate")


@pytest.mark.proves(GOV + "test_published_items_were_generated_by_an_activity")
def test_item_without_generating_activity(owner_pg: Any, item: str) -> None:
    deleted: list[tuple[Any, ...]] = []
    with injected(lambda: deleted.extend(owner_pg.rows("DELETE FROM kfm.prov_links WHERE subject = %s AND relation "
                                                       "= 'wasGeneratedBy' RETURNING subject, relation, object",
                                                       (item,))),
                  lambda: [owner_pg.execute("INSERT INTO kfm.prov_links VALUES (%s, %s, %s)", r) for r in deleted]):
        assert_fails(GOV + "test_published_items_were_generated_by_an_activity", item)


@pytest.mark.proves(GOV + "test_no_dangling_provenance")
def test_derivation_from_a_missing_entity(owner_pg: Any, item: str) -> None:
    with injected(lambda: owner_pg.execute("INSERT INTO kfm.prov_links VALUES (%s, 'wasDerivedFrom', "
                                           "'kfm-proof-ghost')", (item,)),
                  lambda: owner_pg.execute("DELETE FROM kfm.prov_links WHERE object = 'kfm-proof-ghost'")):
        assert_fails(GOV + "test_no_dangling_provenance", "kfm-proof-ghost")


@pytest.mark.proves(GOV + "test_published_datasets_have_license_and_publisher")
def test_published_dataset_without_license(owner_pg: Any) -> None:
    dataset, license_ = owner_pg.execute(
        "SELECT id, license FROM kfm.datasets WHERE status = 'published' ORDER BY id LIMIT 1").fetchone()
    with injected(lambda: owner_pg.execute("UPDATE kfm.datasets SET license = NULL WHERE id = %s", (dataset,)),
                  lambda: owner_pg.execute("UPDATE kfm.datasets SET license = %s WHERE id = %s", (license_, dataset))):
        assert_fails(GOV + "test_published_datasets_have_license_and_publisher", dataset)


@pytest.mark.proves(GOV + "test_every_maintenance_run_has_an_end_record")
def test_ledger_run_without_end_record(owner_pg: Any) -> None:
    run_id = "00000000-0000-4000-8000-00000000dead"
    with injected(lambda: owner_pg.execute(
            "INSERT INTO kfm_ops.audit_ledger (run_id, action, actor, environment, plan, outcome) "
            "VALUES (%s, 'cache-rebuild', 'kfm-proof', 'dev', '{}', 'running')", (run_id,)),
            lambda: owner_pg.execute("DELETE FROM kfm_ops.audit_ledger WHERE run_id = %s", (run_id,))):
        assert_fails(GOV + "test_every_maintenance_run_has_an_end_record", run_id)


@pytest.fixture
def restricted(owner_pg: Any) -> tuple[str, dict[str, Any], str]:
    item = _published_item(owner_pg, "restricted")
    geojson, wkt = owner_pg.execute("SELECT ST_AsGeoJSON(geom, 6), ST_AsText(geom, 6) FROM kfm.items WHERE id = %s",
                                    (item,)).fetchone()
    return item, json.loads(geojson), wkt


@pytest.mark.proves(SEN + "test_restricted_geometry_generalized_in_search")
def test_exact_restricted_geometry_leaked_into_search(search_writer: Any, restricted: tuple) -> None:
    item, exact, _wkt = restricted
    index = next(iter(search_writer.indices.get_alias(name=ALIAS)))
    original = search_writer.get(index=index, id=item)["_source"]
    with injected(lambda: search_writer.index(index=index, id=item, body={**original, "geometry": exact}, refresh=True),
                  lambda: search_writer.index(index=index, id=item, body=original, refresh=True)):
        assert_fails(SEN + "test_restricted_geometry_generalized_in_search", item, "leak")


@pytest.mark.proves(SEN + "test_restricted_geometry_generalized_in_graph")
def test_exact_restricted_geometry_leaked_into_graph(graph_writer: Any, restricted: tuple) -> None:
    item, _exact, wkt = restricted
    before = graph_writer.run("MATCH (i:Item {id: $id}) RETURN i.geometry_wkt AS w", id=item)[0]["w"]
    set_wkt = "MATCH (i:Item {id: $id}) SET i.geometry_wkt = $w"
    with injected(lambda: graph_writer.run(set_wkt, id=item, w=wkt),
                  lambda: graph_writer.run(set_wkt, id=item, w=before)):
        assert_fails(SEN + "test_restricted_geometry_generalized_in_graph", item)


@pytest.mark.proves(SEN + "test_restricted_extents_generalized_in_cache")
def test_exact_restricted_extent_leaked_into_cache(cache_writer: Any, owner_pg: Any) -> None:
    key = "kfm:summary:dataset:archaeo-sites"
    before = cache_writer.hget(key, "extent_bbox")
    assert before, "the cache is not built"
    exact = owner_pg.execute("SELECT concat_ws(',', ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)) FROM "
                             "(SELECT ST_Extent(geom)::geometry e FROM kfm.items WHERE dataset_id = "
                             "'archaeo-sites') x").fetchone()[0]
    with injected(lambda: cache_writer.hset(key, "extent_bbox", exact),
                  lambda: cache_writer.hset(key, "extent_bbox", before)):
        assert_fails(SEN + "test_restricted_extents_generalized_in_cache", "archaeo-sites")


@pytest.fixture
def draft_item(owner_pg: Any) -> Iterator[dict[str, Any]]:
    row = owner_pg.execute("SELECT i.id, i.dataset_id FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id "
                           "WHERE d.status = 'draft' ORDER BY i.id LIMIT 1").fetchone()
    assert row, "the sample catalog has no draft items"
    yield {"id": row[0], "dataset_id": row[1]}


@pytest.mark.proves(SEN + "test_unpublished_absent_from_search")
def test_draft_item_in_search(search_writer: Any, draft_item: dict[str, Any]) -> None:
    index = next(iter(search_writer.indices.get_alias(name=ALIAS)))
    document = {"id": draft_item["id"], "dataset_id": draft_item["dataset_id"], "title": "draft", "content_hash": "x"}
    with injected(lambda: search_writer.index(index=index, id=draft_item["id"], refresh=True, body=document),
                  lambda: search_writer.delete(index=index, id=draft_item["id"], refresh=True)):
        assert_fails(SEN + "test_unpublished_absent_from_search", draft_item["id"])


@pytest.mark.proves(SEN + "test_unpublished_absent_from_graph")
def test_draft_item_in_graph(graph_writer: Any, draft_item: dict[str, Any]) -> None:
    with injected(lambda: graph_writer.run("CREATE (:Item {id: $id, dataset_id: $ds, content_hash: 'x'})",
                                           id=draft_item["id"], ds=draft_item["dataset_id"]),
                  lambda: graph_writer.run("MATCH (i:Item {id: $id}) DETACH DELETE i", id=draft_item["id"])):
        assert_fails(SEN + "test_unpublished_absent_from_graph", draft_item["id"])


@pytest.mark.proves(SEN + "test_unpublished_absent_from_cache")
def test_draft_dataset_in_cache(cache_writer: Any, draft_item: dict[str, Any]) -> None:
    key = f"kfm:summary:dataset:{draft_item['dataset_id']}"
    summary = {"dataset_id": draft_item["dataset_id"], "item_count": "1"}
    with injected(lambda: (cache_writer.hset(key, mapping=summary), cache_writer.expire(key, 600)),
                  lambda: cache_writer.delete(key)):
        assert_fails(SEN + "test_unpublished_absent_from_cache", draft_item["dataset_id"])


@pytest.mark.proves(CON + "test_search_matches_canonical")
def test_three_documents_deleted_from_search(search_writer: Any, owner_pg: Any) -> None:
    index = next(iter(search_writer.indices.get_alias(name=ALIAS)))
    ids = [r[0] for r in owner_pg.rows(f"SELECT id FROM {PUBLISHED_ITEMS} ORDER BY id LIMIT 3 OFFSET 10")]
    with documents_deleted(search_writer, index, ids):
        assert_fails(CON + "test_search_matches_canonical", "3 missing", *ids)
    assert_passes(CON + "test_search_matches_canonical")


@pytest.mark.proves(CON + "test_graph_matches_canonical")
def test_stale_and_orphaned_graph_items(graph_writer: Any, item: str) -> None:
    """A node synced from an older version of its item (its content hash and fingerprint agree, both old), and an
    Item node with no canonical item (written with its fingerprint, as a sync would have)."""
    before = graph_writer.run("MATCH (i:Item {id: $id}) RETURN i.content_hash AS h, i.sync_h1 AS h1, "
                              "i.sync_h2 AS h2", id=item)[0]
    _b, h1, h2 = buckets.fields(item, "stale")
    ob, oh1, oh2 = buckets.fields("kfm-proof-orphan", "x")

    def drift() -> None:
        graph_writer.run("MATCH (i:Item {id: $id}) SET i.content_hash = 'stale', i.sync_h1 = $h1, i.sync_h2 = $h2",
                         id=item, h1=h1, h2=h2)
        graph_writer.run("CREATE (:Item {id: 'kfm-proof-orphan', content_hash: 'x', sync_bucket: $b, sync_h1: $h1, "
                         "sync_h2: $h2})", b=ob, h1=oh1, h2=oh2)

    def restore() -> None:
        graph_writer.run("MATCH (i:Item {id: $id}) SET i.content_hash = $h, i.sync_h1 = $h1, i.sync_h2 = $h2",
                         id=item, **before)
        graph_writer.run("MATCH (i:Item {id: 'kfm-proof-orphan'}) DETACH DELETE i")

    with injected(drift, restore):
        assert_fails(CON + "test_graph_matches_canonical", "1 orphaned", "1 stale", item, "kfm-proof-orphan")


@pytest.mark.proves(CON + "test_cache_counts_match_canonical")
def test_cached_count_wrong(cache_writer: Any) -> None:
    key = "kfm:summary:dataset:courthouses"
    before = cache_writer.hget(key, "item_count")
    with injected(lambda: cache_writer.hset(key, "item_count", str(int(before) + 5)),
                  lambda: cache_writer.hset(key, "item_count", before)):
        assert_fails(CON + "test_cache_counts_match_canonical", "courthouses")


@pytest.mark.parametrize("store", ["search", "graph", "cache"])
@pytest.mark.proves(CON + "test_derived_store_is_fresh")
def test_store_behind_the_canonical_store(owner_pg: Any, store: str) -> None:
    before = owner_pg.execute("SELECT watermark FROM kfm_ops.sync_watermarks WHERE store = %s", (store,)).fetchone()[0]
    # a year back: the catalog's changes of the past year now wait for the store, the oldest for months
    with injected(lambda: owner_pg.execute("UPDATE kfm_ops.sync_watermarks SET watermark = watermark - "
                                           "interval '1 year' WHERE store = %s", (store,)),
                  lambda: owner_pg.execute("UPDATE kfm_ops.sync_watermarks SET watermark = %s WHERE store = %s",
                                           (before, store))):
        assert_fails(f"{CON}test_derived_store_is_fresh[{store}]", f"the {store} store is", "s behind",
                     "item changes", "since its watermark")
