"""Sensitivity and publication state in the derived stores.

A restricted item's exact geometry never leaves the canonical store: derived
stores hold only the generalized one (the policy's grid cell). Items of draft or
retired datasets appear in no derived store.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from kfm_ops.consistency import pending
from kfm_ops.pipeline import chunks
from kfm_ops.pytest_plugin.assertions import expect, first_n
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.pytest_plugin.lag import PendingChanges
from kfm_ops.settings import Settings
from kfm_ops.stores.cache import CacheStore, summary_key
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PUBLISHED_DATASETS, PUBLISHED_ITEMS, PostgisStore
from kfm_ops.stores.search import SearchStore

BATCH = 500
RESTRICTED_SQL = f"""
SELECT id, ST_AsGeoJSON(kfm_ops.generalize(geom, %(grid)s), 6), ST_AsText(kfm_ops.generalize(geom, %(grid)s), 6)
FROM {PUBLISHED_ITEMS} WHERE sensitivity = 'restricted' ORDER BY id
"""


def _restricted_batches(postgis: PostgisStore, grid: float) -> Iterator[list[tuple[Any, ...]]]:
    return chunks(postgis.stream(RESTRICTED_SQL, {"grid": grid}, batch=BATCH), BATCH)


def _round(geometry: Any) -> Any:
    if isinstance(geometry, list):
        return [_round(g) for g in geometry]
    if isinstance(geometry, float):
        return round(geometry, 6)
    if isinstance(geometry, dict):
        return {k: _round(v) for k, v in geometry.items()}
    return geometry


@pytest.mark.risk("low")
@pytest.mark.covers("policy:sensitivity.grid_degrees")
def test_restricted_geometry_generalized_in_search(postgis: PostgisStore, search: SearchStore,
                                                   sensitivity_grid: float,
                                                   kfm_contract: ContractLoader) -> None:
    """Search documents of restricted items carry only the generalized geometry."""
    alias, leaked = kfm_contract("search")["alias"], []
    for rows in _restricted_batches(postgis, sensitivity_grid):
        docs = search.client.mget(index=alias, body={"ids": [r[0] for r in rows]}, _source=["geometry"])["docs"]
        for (item_id, generalized, _wkt), doc in zip(rows, docs, strict=True):
            if doc.get("found") and _round(doc["_source"].get("geometry")) != _round(json.loads(generalized)):
                leaked.append(item_id)
    expect(not leaked, "restricted items whose search geometry is not the generalized one (exact geometry leak)",
           search.where(f"alias {alias}"), leaked,
           "rebuild the index from the canonical store: kfm-maint reindex --targets search")


@pytest.mark.risk("low")
@pytest.mark.covers("policy:sensitivity.grid_degrees")
def test_restricted_geometry_generalized_in_graph(postgis: PostgisStore, graph: GraphStore,
                                                  sensitivity_grid: float) -> None:
    """Graph Item nodes of restricted items carry only the generalized geometry."""
    leaked = []
    for rows in _restricted_batches(postgis, sensitivity_grid):
        expected = {r[0]: r[2] for r in rows}
        found = graph.run("UNWIND $ids AS id MATCH (i:Item {id: id}) RETURN i.id AS id, i.geometry_wkt AS wkt",
                          ids=list(expected))
        leaked += [f["id"] for f in found if f["wkt"] != expected[f["id"]]]
    expect(not leaked, "restricted items whose graph geometry is not the generalized one (exact geometry leak)",
           graph.where("label Item.geometry_wkt"), leaked, "re-sync the graph: kfm-maint reindex --targets graph")


@pytest.mark.risk("low")
@pytest.mark.covers("policy:sensitivity.grid_degrees")
def test_restricted_extents_generalized_in_cache(postgis: PostgisStore, cache: CacheStore, sensitivity_grid: float,
                                                 kfm_contract: ContractLoader) -> None:
    """Cached extents of all-restricted datasets lie on the policy grid (no exact site bounds)."""
    template = kfm_contract("cache")["redis"]["summary_key"]
    datasets = [r[0] for r in postgis.rows(
        f"SELECT d.id FROM {PUBLISHED_DATASETS} d WHERE EXISTS "
        "(SELECT 1 FROM kfm.items i WHERE i.dataset_id = d.id) AND NOT EXISTS "
        "(SELECT 1 FROM kfm.items i WHERE i.dataset_id = d.id AND i.sensitivity = 'public') ORDER BY d.id")]
    leaked = []
    for dataset_id in datasets:
        bbox = cache.client.hget(summary_key(template, dataset_id), "extent_bbox")
        if bbox:
            coords = [float(c) for c in bbox.split(",")]
            if any(abs(c / sensitivity_grid - round(c / sensitivity_grid)) > 1e-6 for c in coords):
                leaked.append(dataset_id)
    expect(not leaked, "cached extents of restricted datasets are not on the generalization grid",
           cache.where(f"key {template}"), leaked, "rebuild the cache: kfm-maint cache rebuild")


def _unpublished(postgis: PostgisStore, store: str, settings: Settings) -> list[str]:
    """The draft and retired datasets a derived store must not hold — but for an unpublishing still pending for
    that store (after its last sync, within the freshness SLA: reported, not failed)."""
    rows = postgis.rows("SELECT id, updated_at FROM kfm.datasets "
                        f"WHERE id NOT IN (SELECT id FROM {PUBLISHED_DATASETS}) ORDER BY id")
    watermark, now = postgis.one("SELECT (SELECT watermark FROM kfm_ops.sync_watermarks WHERE store = %s), now()",
                                 (store,))
    checks = settings.checks
    waiting = [d for d, changed in rows if pending(changed, watermark=watermark, now=now,
                                                   max_lag=timedelta(seconds=checks.max_freshness_lag_seconds),
                                                   margin=timedelta(seconds=checks.transaction_margin_seconds))]
    if waiting:
        warnings.warn(f"{store}: unpublishing of {', '.join(waiting)} pending (after the last sync at {watermark}, "
                      "within the freshness SLA)", PendingChanges, stacklevel=2)
    return [d for d, _changed in rows if d not in waiting]


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_unpublished_absent_from_search(postgis: PostgisStore, search: SearchStore, kfm_contract: ContractLoader,
                                        kfm_settings: Settings) -> None:
    """No item of a draft or retired dataset is in the search index (but for an unpublishing still pending)."""
    alias, hidden = kfm_contract("search")["alias"], _unpublished(postgis, "search", kfm_settings)
    hits = search.client.search(index=alias, body={"size": first_n(), "_source": False, "track_total_hits": True,
                                                   "query": {"terms": {"dataset_id": hidden or ["-"]}}})["hits"]
    expect(hits["total"]["value"] == 0, "items of unpublished datasets are in the search index",
           f"search alias {alias}", [h["_id"] for h in hits["hits"]],
           "kfm-maint sync --targets search", total=hits["total"]["value"])


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_unpublished_absent_from_graph(postgis: PostgisStore, graph: GraphStore, kfm_settings: Settings) -> None:
    """No item or dataset node of a draft or retired dataset is in the graph (but for an unpublishing pending)."""
    rows = graph.run("MATCH (n) WHERE (n:Item AND n.dataset_id IN $ids) OR (n:Dataset AND n.id IN $ids) "
                     "RETURN n.id AS id ORDER BY id LIMIT $n", ids=_unpublished(postgis, "graph", kfm_settings),
                     n=first_n())
    expect(not rows, "items or datasets of unpublished datasets are in the graph", "graph labels Item, Dataset",
           [r["id"] for r in rows], "kfm-maint sync --targets graph")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_unpublished_absent_from_cache(postgis: PostgisStore, cache: CacheStore, kfm_contract: ContractLoader,
                                       kfm_settings: Settings) -> None:
    """No summary or stats row of a draft or retired dataset is in the cache (but for an unpublishing pending)."""
    template = kfm_contract("cache")["redis"]["summary_key"]
    hidden = _unpublished(postgis, "cache", kfm_settings)
    present = [d for d in hidden if cache.client.exists(summary_key(template, d))]
    present += [r[0] for r in postgis.rows(
        "SELECT dataset_id FROM kfm_cache.dataset_stats WHERE dataset_id = ANY(%s)", (hidden,))]
    expect(not present, "unpublished datasets are in the cache", f"cache key {template} / kfm_cache.dataset_stats",
           present, "kfm-maint sync --targets cache")
