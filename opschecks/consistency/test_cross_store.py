"""Published items compared between PostGIS and each derived store, streamed and memory-bounded.

Ids and content hashes are merged from id-ordered streams (kfm_ops.consistency;
for search, an order-free digest of both sides first and the merge only on a
mismatch); the failure names missing, orphaned and stale counts with the first N ids.
Freshness compares the canonical newest ``updated_at`` with each store's sync
watermark (``kfm_ops.sync_watermarks``).
"""

from __future__ import annotations

from typing import Any

import pytest

from kfm_ops import contracts
from kfm_ops.checks_support import expect, fail_with, where
from kfm_ops.consistency import canonical_pairs, compare, graph_pairs
from kfm_ops.digest import search_matches
from kfm_ops.settings import Settings

PER_DATASET_SQL = """
SELECT d.id, count(i.id) FROM kfm.datasets d LEFT JOIN kfm.items i ON i.dataset_id = d.id
WHERE d.status = 'published' GROUP BY d.id ORDER BY d.id
"""


def _report(diff: Any, where: str, hint: str) -> None:
    __tracebackhide__ = True
    if not diff.clean:
        fail_with(f"{diff.summary()}", where, diff.missing_ids + diff.orphaned_ids + diff.stale_ids, hint,
                  total=diff.missing + diff.orphaned + diff.stale, first_n=3 * diff.first_n)


@pytest.mark.risk("medium")
def test_search_matches_canonical(postgis: Any, search: Any, kfm_settings: Settings) -> None:
    """Search documents (ids, content hashes) equal the published items of the canonical store."""
    alias = contracts.load("search", kfm_settings.contracts_dir)["alias"]
    diff = search_matches(postgis, search, alias, store=f"search alias {alias}", first_n=kfm_settings.checks.first_n)
    _report(diff, where(kfm_settings, "search", f"alias {alias}"),
            "kfm-maint reindex --targets search")


@pytest.mark.risk("medium")
def test_graph_matches_canonical(postgis: Any, graph: Any, kfm_settings: Settings) -> None:
    """Graph Item nodes (ids, content hashes) equal the published items of the canonical store."""
    diff = compare(canonical_pairs(postgis), graph_pairs(graph), store="graph label Item",
                   first_n=kfm_settings.checks.first_n)
    _report(diff, where(kfm_settings, "graph", "label Item"),
            "kfm-maint reindex --targets graph (add --prune for orphans)")


@pytest.mark.risk("low")
def test_cache_counts_match_canonical(postgis: Any, cache: Any, kfm_settings: Settings) -> None:
    """Per-dataset item counts in the stats view and the Redis summaries equal the canonical counts."""
    key = contracts.load("cache", kfm_settings.contracts_dir)["redis"]["summary_key"]
    expected = dict(postgis.execute(PER_DATASET_SQL).fetchall())
    stats = dict(postgis.execute("SELECT dataset_id, item_count FROM kfm_cache.dataset_stats").fetchall())
    wrong = []
    for dataset_id, count in sorted(expected.items()):
        cached = cache.hget(key.format(dataset_id=dataset_id), "item_count")
        if stats.get(dataset_id) != count:
            wrong.append(f"{dataset_id} (stats {stats.get(dataset_id)} ≠ {count})")
        if cached is None or int(cached) != count:
            wrong.append(f"{dataset_id} (summary {cached} ≠ {count})")
    wrong += [f"{d} (stats row for a dataset that is not published)" for d in sorted(set(stats) - set(expected))]
    expect(not wrong, "cached per-dataset counts differ from the canonical store",
           f"postgis kfm_cache.dataset_stats / cache key {key}", wrong, "kfm-maint cache rebuild",
           first_n=kfm_settings.checks.first_n)


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.parametrize("store", [pytest.param(s, marks=getattr(pytest.mark, s))
                                   for s in ("search", "graph", "cache")])
def test_derived_store_is_fresh(store: str, postgis: Any, kfm_settings: Settings) -> None:
    """The store's sync watermark is within the allowed lag of the canonical newest update."""
    row = postgis.execute(
        "SELECT (SELECT max(i.updated_at) FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id "
        "        WHERE d.status = 'published'), w.watermark, w.synced_at "
        "FROM (SELECT 1) one LEFT JOIN kfm_ops.sync_watermarks w ON w.store = %s", (store,)).fetchone()
    newest, watermark, synced_at = row
    hint = {"search": "kfm-maint reindex --targets search", "graph": "kfm-maint reindex --targets graph",
            "cache": "kfm-maint cache rebuild"}[store]
    expect(watermark is not None or newest is None, f"the {store} store has never been synced",
           "postgis kfm_ops.sync_watermarks", [store], hint)
    if newest is not None and watermark is not None:
        lag = (newest - watermark).total_seconds()
        expect(lag <= kfm_settings.checks.max_freshness_lag_seconds,
               f"the {store} store is {lag:.0f}s behind the canonical store (allowed "
               f"{kfm_settings.checks.max_freshness_lag_seconds:.0f}s; last synced {synced_at})",
               "postgis kfm_ops.sync_watermarks", [store], hint)
