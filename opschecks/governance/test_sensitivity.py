"""Sensitivity and publication state in the derived stores.

A restricted item's exact geometry never leaves the canonical store: derived
stores hold only the generalized one (the policy's grid cell). Items of draft or
retired datasets appear in no derived store.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kfm_ops import contracts
from kfm_ops.checks_support import expect, where
from kfm_ops.settings import Settings

BATCH = 500
RESTRICTED_SQL = """
SELECT i.id, ST_AsGeoJSON(kfm_ops.generalize(i.geom, %(grid)s), 6), ST_AsText(kfm_ops.generalize(i.geom, %(grid)s), 6)
FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id
WHERE d.status = 'published' AND i.sensitivity = 'restricted' ORDER BY i.id
"""


def _grid(policy: Any) -> float:
    return float(policy.data("kfm/sensitivity/grid_degrees"))


def _restricted_batches(postgis: Any, grid: float) -> Any:
    with postgis.transaction(), postgis.cursor(name="kfm_restricted") as cur:
        cur.itersize = BATCH
        cur.execute(RESTRICTED_SQL, {"grid": grid})
        while rows := cur.fetchmany(BATCH):
            yield rows


def _round(geometry: Any) -> Any:
    if isinstance(geometry, list):
        return [_round(g) for g in geometry]
    if isinstance(geometry, float):
        return round(geometry, 6)
    if isinstance(geometry, dict):
        return {k: _round(v) for k, v in geometry.items()}
    return geometry


def _alias(settings: Settings) -> str:
    return str(contracts.load("search", settings.contracts_dir)["alias"])


@pytest.mark.risk("low")
def test_restricted_geometry_generalized_in_search(postgis: Any, search: Any, policy: Any,
                                                   kfm_settings: Settings) -> None:
    """Search documents of restricted items carry only the generalized geometry."""
    alias, leaked = _alias(kfm_settings), []
    for rows in _restricted_batches(postgis, _grid(policy)):
        docs = search.mget(index=alias, body={"ids": [r[0] for r in rows]}, _source=["geometry"])["docs"]
        for (item_id, generalized, _wkt), doc in zip(rows, docs, strict=True):
            if doc.get("found") and _round(doc["_source"].get("geometry")) != _round(json.loads(generalized)):
                leaked.append(item_id)
    expect(not leaked, "restricted items whose search geometry is not the generalized one (exact geometry leak)",
           where(kfm_settings, "search", f"alias {alias}"), leaked,
           "rebuild the index from the canonical store: kfm-maint reindex --targets search",
           first_n=kfm_settings.checks.first_n)


@pytest.mark.risk("low")
def test_restricted_geometry_generalized_in_graph(postgis: Any, graph: Any, policy: Any,
                                                  kfm_settings: Settings) -> None:
    """Graph Item nodes of restricted items carry only the generalized geometry."""
    leaked = []
    for rows in _restricted_batches(postgis, _grid(policy)):
        expected = {r[0]: r[2] for r in rows}
        found = graph.run("UNWIND $ids AS id MATCH (i:Item {id: id}) RETURN i.id AS id, i.geometry_wkt AS wkt",
                          ids=list(expected))
        leaked += [f["id"] for f in found if f["wkt"] != expected[f["id"]]]
    expect(not leaked, "restricted items whose graph geometry is not the generalized one (exact geometry leak)",
           where(kfm_settings, "graph", "label Item.geometry_wkt"), leaked,
           "re-sync the graph: kfm-maint reindex --targets graph", first_n=kfm_settings.checks.first_n)


@pytest.mark.risk("low")
def test_restricted_extents_generalized_in_cache(postgis: Any, cache: Any, policy: Any,
                                                 kfm_settings: Settings) -> None:
    """Cached extents of all-restricted datasets lie on the policy grid (no exact site bounds)."""
    grid = _grid(policy)
    key = contracts.load("cache", kfm_settings.contracts_dir)["redis"]["summary_key"]
    datasets = [r[0] for r in postgis.execute(
        "SELECT d.id FROM kfm.datasets d WHERE d.status = 'published' AND EXISTS "
        "(SELECT 1 FROM kfm.items i WHERE i.dataset_id = d.id) AND NOT EXISTS "
        "(SELECT 1 FROM kfm.items i WHERE i.dataset_id = d.id AND i.sensitivity = 'public') ORDER BY d.id")]
    leaked = []
    for dataset_id in datasets:
        bbox = cache.hget(key.format(dataset_id=dataset_id), "extent_bbox")
        if bbox:
            coords = [float(c) for c in bbox.split(",")]
            if any(abs(c / grid - round(c / grid)) > 1e-6 for c in coords):
                leaked.append(dataset_id)
    expect(not leaked, "cached extents of restricted datasets are not on the generalization grid",
           where(kfm_settings, "cache", f"key {key}"), leaked,
           "rebuild the cache: kfm-maint cache rebuild", first_n=kfm_settings.checks.first_n)


def _unpublished(postgis: Any) -> list[str]:
    return [r[0] for r in postgis.execute("SELECT id FROM kfm.datasets WHERE status <> 'published' ORDER BY id")]


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_unpublished_absent_from_search(postgis: Any, search: Any, kfm_settings: Settings) -> None:
    """No item of a draft or retired dataset is in the search index."""
    alias, hidden = _alias(kfm_settings), _unpublished(postgis)
    hits = search.search(index=alias, body={"size": kfm_settings.checks.first_n, "_source": False,
                                            "track_total_hits": True,
                                            "query": {"terms": {"dataset_id": hidden or ["-"]}}})["hits"]
    expect(hits["total"]["value"] == 0, "items of unpublished datasets are in the search index",
           f"search alias {alias}", [h["_id"] for h in hits["hits"]],
           "rebuild the index: kfm-maint reindex --targets search", total=hits["total"]["value"],
           first_n=kfm_settings.checks.first_n)


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_unpublished_absent_from_graph(postgis: Any, graph: Any, kfm_settings: Settings) -> None:
    """No item or dataset node of a draft or retired dataset is in the graph."""
    hidden = _unpublished(postgis)
    rows = graph.run("MATCH (n) WHERE (n:Item AND n.dataset_id IN $ids) OR (n:Dataset AND n.id IN $ids) "
                     "RETURN n.id AS id ORDER BY id LIMIT $n", ids=hidden, n=kfm_settings.checks.first_n)
    expect(not rows, "items or datasets of unpublished datasets are in the graph", "graph labels Item, Dataset",
           [r["id"] for r in rows], "re-sync with pruning: kfm-maint reindex --targets graph --prune",
           first_n=kfm_settings.checks.first_n)


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_unpublished_absent_from_cache(postgis: Any, cache: Any, kfm_settings: Settings) -> None:
    """No summary or stats row of a draft or retired dataset is in the cache."""
    key = contracts.load("cache", kfm_settings.contracts_dir)["redis"]["summary_key"]
    hidden = _unpublished(postgis)
    present = [d for d in hidden if cache.exists(key.format(dataset_id=d))]
    present += [r[0] for r in postgis.execute(
        "SELECT dataset_id FROM kfm_cache.dataset_stats WHERE dataset_id = ANY(%s)", (hidden,))]
    expect(not present, "unpublished datasets are in the cache", f"cache key {key} / kfm_cache.dataset_stats",
           present, "rebuild the cache: kfm-maint cache rebuild", first_n=kfm_settings.checks.first_n)
