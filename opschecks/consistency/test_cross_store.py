"""Published items compared between PostGIS and each derived store, memory-bounded at any size.

Each engine sums bucket digests of its records (kfm_ops.buckets); only the buckets that
differ are merged id by id (kfm_ops.compare). Every difference is then dated
(kfm_ops.consistency.classify): a change newer than the store's sync watermark and younger
than the freshness SLA is *pending* — counted and reported, not a failure (a healthy
production writes all day); anything older fails, naming missing, orphaned and stale ids.
Freshness compares the canonical newest ``updated_at`` with each store's watermark.
"""

from __future__ import annotations

import warnings
from datetime import timedelta

import pytest

from kfm_ops.compare import Diff
from kfm_ops.consistency import DerivedSide, GraphSide, Lag, SearchSide, bucket_compare, classify
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


CLASSIFY_MAX = 200_000
"""Differences beyond this many are not dated one by one: a store that far off is not lagging, it is broken."""


class PendingChanges(UserWarning):
    """Differences the store is not yet due to have (newer than its last sync, younger than the SLA)."""


def _matches(store: str, postgis: PostgisStore, side: DerivedSide, settings: Settings, where: str,
             hint: str) -> None:
    """Fail on the differences that are due; report the pending ones."""
    __tracebackhide__ = True
    differences: list[tuple[str, str]] = []
    diff = bucket_compare(postgis, side, store=f"{store}", first_n=first_n(),
                          on_diff=lambda kind, i: differences.append((kind, i)) if len(differences) < CLASSIFY_MAX
                          else None)
    if diff.clean:
        _figures(store, diff, None)
        return
    watermark, now = postgis.one("SELECT (SELECT watermark FROM kfm_ops.sync_watermarks WHERE store = %s), now()",
                                 (store.split()[0],))
    lag = classify(differences if diff.total <= CLASSIFY_MAX else [], postgis, side, watermark=watermark, now=now,
                   max_lag=timedelta(seconds=settings.checks.max_freshness_lag_seconds),
                   margin=timedelta(seconds=settings.checks.transaction_margin_seconds))
    _figures(store, diff, lag if diff.total <= CLASSIFY_MAX else None)
    pending = lag.pending_count
    if pending:
        warnings.warn(f"{store}: {pending} differences pending (changed after the last sync at {watermark}, "
                      "within the freshness SLA)", PendingChanges, stacklevel=1)
    if diff.total > pending:
        due = ", ".join(f"{len(ids)} {kind}" for kind, ids in lag.due.items() if ids) or f"{diff.total} differences"
        ids = [i for ids in lag.due.values() for i in ids]
        fail_with(f"{store}: {due} older than the last sync or the SLA (and {pending} more pending)", where,
                  ids or diff.missing_ids + diff.orphaned_ids + diff.stale_ids, hint,
                  total=diff.total - pending, first_n=3 * first_n())


def _figures(store: str, diff: Diff, lag: Lag | None) -> None:
    """kfm_consistency_items{store, kind}: due differences by kind (what alerts), pending ones, items compared."""
    for kind in ("missing", "orphaned", "stale"):
        figure("consistency_items", len(lag.due[kind]) if lag else getattr(diff, kind), store=store, kind=kind)
    figure("consistency_items", lag.pending_count if lag else 0, store=store, kind="pending")
    figure("consistency_items", diff.compared, store=store, kind="compared")


@pytest.mark.risk("medium")
def test_search_matches_canonical(postgis: PostgisStore, search: SearchStore, kfm_contract: ContractLoader,
                                  kfm_settings: Settings) -> None:
    """Search documents (ids, content hashes) equal the published items, but for changes still pending."""
    alias = kfm_contract("search")["alias"]
    _matches("search", postgis, SearchSide(search, alias), kfm_settings, search.where(f"alias {alias}"),
             "kfm-maint sync --targets search (a broken index: kfm-maint reindex --targets search)")


@pytest.mark.risk("medium")
def test_graph_matches_canonical(postgis: PostgisStore, graph: GraphStore, kfm_settings: Settings) -> None:
    """Graph Item nodes (ids, content hashes) equal the published items, but for changes still pending."""
    _matches("graph", postgis, GraphSide(graph), kfm_settings, graph.where("label Item"),
             "kfm-maint sync --targets graph")


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
        if lag > allowed:
            items, datasets = postgis.one(
                f"SELECT (SELECT count(*) FROM {PUBLISHED_ITEMS} WHERE updated_at > %s), "
                "(SELECT count(*) FROM kfm.datasets WHERE updated_at > %s)", (watermark, watermark))
            fail_with(f"the {store} store is {lag:.0f}s behind the canonical store (allowed {allowed:.0f}s; last "
                      f"synced {synced_at}); pending since: {items} item changes, {datasets} dataset changes",
                      where, [store], hint)
