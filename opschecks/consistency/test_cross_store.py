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
from kfm_ops.consistency import DerivedSide, GraphSide, Lag, SearchSide, bucket_compare, classify, pending
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
SYNC_HINTS = {"search": "kfm-maint sync --targets search", "graph": "kfm-maint sync --targets graph",
              "cache": "kfm-maint sync --targets cache"}


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


DATASET_CHANGED_SQL = """
SELECT d.id, GREATEST(d.updated_at, max(i.updated_at)) FROM kfm.datasets d
LEFT JOIN kfm.items i ON i.dataset_id = d.id WHERE d.id = ANY(%s) GROUP BY d.id
"""


@pytest.mark.risk("low")
def test_cache_counts_match_canonical(postgis: PostgisStore, cache: CacheStore, kfm_contract: ContractLoader,
                                      kfm_settings: Settings) -> None:
    """Per-dataset item counts in the stats view and the Redis summaries equal the canonical counts, but for
    datasets whose change is still pending (newer than the cache's watermark, younger than the SLA)."""
    template = kfm_contract("cache")["redis"]["summary_key"]
    expected = dict(postgis.rows(PER_DATASET_SQL))
    stats = dict(postgis.rows("SELECT dataset_id, item_count FROM kfm_cache.dataset_stats"))
    wrong: dict[str, list[str]] = {}
    for dataset_id, count in sorted(expected.items()):
        cached = cache.client.hget(summary_key(template, dataset_id), "item_count")
        if stats.get(dataset_id) != count:
            wrong.setdefault(dataset_id, []).append(f"stats {stats.get(dataset_id)} ≠ {count}")
        if cached is None or int(cached) != count:
            wrong.setdefault(dataset_id, []).append(f"summary {cached} ≠ {count}")
    for dataset_id in sorted(set(stats) - set(expected)):
        wrong.setdefault(dataset_id, []).append("stats row for a dataset that is not published")
    if not wrong:
        return
    # a dataset's count moves with its items' inserts and deletions (the deletion dates the dataset)
    changed = dict(postgis.rows(DATASET_CHANGED_SQL, (sorted(wrong),)))
    watermark, now = postgis.one("SELECT (SELECT watermark FROM kfm_ops.sync_watermarks WHERE store = 'cache'), "
                                 "now()")
    checks = kfm_settings.checks
    waiting = [d for d in wrong if pending(changed.get(d), watermark=watermark, now=now,
                                           max_lag=timedelta(seconds=checks.max_freshness_lag_seconds),
                                           margin=timedelta(seconds=checks.transaction_margin_seconds))]
    if waiting:
        warnings.warn(f"cache: {len(waiting)} datasets' counts pending (changed after the last sync at {watermark}, "
                      "within the freshness SLA)", PendingChanges, stacklevel=1)
    due = [f"{d} ({', '.join(why)})" for d, why in sorted(wrong.items()) if d not in waiting]
    expect(not due, "cached per-dataset counts differ from the canonical store",
           f"postgis kfm_cache.dataset_stats / cache key {template}", due, "kfm-maint sync --targets cache")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.parametrize("store", [pytest.param(s, marks=getattr(pytest.mark, s)) for s in SYNC_HINTS])
def test_derived_store_is_fresh(store: str, postgis: PostgisStore, kfm_settings: Settings) -> None:
    """No canonical change the store lacks (newer than its sync watermark) is older than the freshness SLA."""
    watermark, synced_at, now = postgis.one(
        "SELECT w.watermark, w.synced_at, now() FROM (SELECT 1) one "
        "LEFT JOIN kfm_ops.sync_watermarks w ON w.store = %s", (store,))
    where, hint = "postgis kfm_ops.sync_watermarks", SYNC_HINTS[store]
    if watermark is None:
        published = postgis.scalar(f"SELECT count(*) FROM {PUBLISHED_ITEMS}")
        expect(not published, f"the {store} store has never been synced ({published} published items)", where,
               [store], hint)
        return
    # The lag is the age of the oldest change the store lacks: a store with nothing to catch up is
    # fresh however long ago it synced; one change left behind for longer than the SLA is not.
    items, datasets, oldest = postgis.one(
        f"SELECT (SELECT count(*) FROM {PUBLISHED_ITEMS} WHERE updated_at > %(w)s), "
        "(SELECT count(*) FROM kfm.datasets WHERE updated_at > %(w)s), "
        f"LEAST((SELECT min(updated_at) FROM {PUBLISHED_ITEMS} WHERE updated_at > %(w)s), "
        "(SELECT min(updated_at) FROM kfm.datasets WHERE updated_at > %(w)s))", {"w": watermark})
    lag = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    figure("derived_store_lag_seconds", lag, store=store)  # kfm_derived_store_lag_seconds{store}
    figure("derived_store_pending_changes", items + datasets, store=store)
    allowed = kfm_settings.checks.max_freshness_lag_seconds
    if lag > allowed:
        fail_with(f"the {store} store is {lag:.0f}s behind the canonical store (allowed {allowed:.0f}s): "
                  f"{items} item changes and {datasets} dataset changes since its watermark {watermark} "
                  f"(last synced {synced_at}), the oldest from {oldest}", where, [store], hint)
