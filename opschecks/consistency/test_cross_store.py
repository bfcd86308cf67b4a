"""Published items compared between PostGIS and each derived store, streamed and memory-bounded.

Ids and content hashes are merged from id-ordered streams (kfm_ops.compare; for
search, an order-free digest of both sides first and the merge only on a mismatch);
the failure names missing, orphaned and stale counts with the first N ids. Freshness
compares the canonical newest ``updated_at`` with each store's sync watermark
(``kfm_ops.sync_watermarks``).
"""

from __future__ import annotations

import pytest

from kfm_ops.compare import Diff
from kfm_ops.consistency import graph_matches, search_matches
from kfm_ops.pytest_plugin.assertions import expect, fail_with, figure, first_n
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.settings import Settings
from kfm_ops.stores.cache import CacheStore, summary_key
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PUBLISHED_DATASETS, PUBLISHED_ITEMS, PostgisStore
from kfm_ops.stores.search import SearchStore

PER_DATASET_SQL = f"""
SELECT d.id, count(i.id) FROM {PUBLISHED_DATASETS} d LEFT JOIN kfm.items i ON i.dataset_id = d.id
GROUP BY d.id ORDER BY d.id
"""
SYNC_HINTS = {"search": "kfm-maint reindex --targets search", "graph": "kfm-maint reindex --targets graph",
              "cache": "kfm-maint cache rebuild"}


def _report(diff: Diff, store: str, where: str, hint: str) -> None:
    __tracebackhide__ = True
    for kind in ("missing", "orphaned", "stale", "compared"):  # kfm_consistency_items{store, kind} in the metrics
        figure("consistency_items", getattr(diff, kind), store=store, kind=kind)
    if not diff.clean:
        fail_with(diff.summary(), where, diff.missing_ids + diff.orphaned_ids + diff.stale_ids, hint,
                  total=diff.total, first_n=3 * diff.first_n)


@pytest.mark.risk("medium")
def test_search_matches_canonical(postgis: PostgisStore, search: SearchStore, kfm_contract: ContractLoader) -> None:
    """Search documents (ids, content hashes) equal the published items of the canonical store."""
    alias = kfm_contract("search")["alias"]
    diff = search_matches(postgis, search, alias, store=f"search alias {alias}", first_n=first_n())
    _report(diff, "search", search.where(f"alias {alias}"), "kfm-maint reindex --targets search")


@pytest.mark.risk("medium")
def test_graph_matches_canonical(postgis: PostgisStore, graph: GraphStore) -> None:
    """Graph Item nodes (ids, content hashes) equal the published items of the canonical store."""
    diff = graph_matches(postgis, graph, store="graph label Item", first_n=first_n())
    _report(diff, "graph", graph.where("label Item"), "kfm-maint reindex --targets graph (add --prune for orphans)")


@pytest.mark.risk("low")
def test_cache_counts_match_canonical(postgis: PostgisStore, cache: CacheStore,
                                      kfm_contract: ContractLoader) -> None:
    """Per-dataset item counts in the stats view and the Redis summaries equal the canonical counts."""
    template = kfm_contract("cache")["redis"]["summary_key"]
    expected = dict(postgis.rows(PER_DATASET_SQL))
    stats = dict(postgis.rows("SELECT dataset_id, item_count FROM kfm_cache.dataset_stats"))
    wrong = []
    for dataset_id, count in sorted(expected.items()):
        cached = cache.client.hget(summary_key(template, dataset_id), "item_count")
        if stats.get(dataset_id) != count:
            wrong.append(f"{dataset_id} (stats {stats.get(dataset_id)} ≠ {count})")
        if cached is None or int(cached) != count:
            wrong.append(f"{dataset_id} (summary {cached} ≠ {count})")
    wrong += [f"{d} (stats row for a dataset that is not published)" for d in sorted(set(stats) - set(expected))]
    expect(not wrong, "cached per-dataset counts differ from the canonical store",
           f"postgis kfm_cache.dataset_stats / cache key {template}", wrong, "kfm-maint cache rebuild")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.parametrize("store", [pytest.param(s, marks=getattr(pytest.mark, s)) for s in SYNC_HINTS])
def test_derived_store_is_fresh(store: str, postgis: PostgisStore, kfm_settings: Settings) -> None:
    """The store's sync watermark is within the allowed lag of the canonical newest update."""
    newest, watermark, synced_at = postgis.one(
        f"SELECT (SELECT max(updated_at) FROM {PUBLISHED_ITEMS}), w.watermark, w.synced_at "
        "FROM (SELECT 1) one LEFT JOIN kfm_ops.sync_watermarks w ON w.store = %s", (store,))
    where, hint = "postgis kfm_ops.sync_watermarks", SYNC_HINTS[store]
    expect(watermark is not None or newest is None, f"the {store} store has never been synced", where, [store], hint)
    if newest is not None and watermark is not None:
        lag = (newest - watermark).total_seconds()
        figure("derived_store_lag_seconds", max(lag, 0.0), store=store)  # kfm_derived_store_lag_seconds{store}
        allowed = kfm_settings.checks.max_freshness_lag_seconds
        expect(lag <= allowed, f"the {store} store is {lag:.0f}s behind the canonical store (allowed "
               f"{allowed:.0f}s; last synced {synced_at})", where, [store], hint)
