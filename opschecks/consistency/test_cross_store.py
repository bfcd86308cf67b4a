"""Published items compared between PostGIS and each derived store, memory-bounded at any size.

The heavy side of each comparison reads ``canonical``: the read replica when one is configured
(KFM_POSTGIS__REPLICA_DSN, caught up with the primary first), else the primary. ``--kfm-partition i/N``
compares one bucket range: N runs (a Kubernetes Indexed Job) cover every record once.

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

from kfm_ops.consistency import GraphSide, SearchSide, SharedDigests, bucket_compare, pending
from kfm_ops.partition import Partition
from kfm_ops.pytest_plugin.assertions import expect, fail_with, figure, first_n
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.pytest_plugin.lag import PendingChanges, expect_in_sync
from kfm_ops.settings import Settings
from kfm_ops.stores.cache import CacheStore, summary_key
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PUBLISHED_DATASETS, PUBLISHED_ITEMS, PostgisStore
from kfm_ops.stores.search import SearchStore

# counted from the dataset index alone (an index-only scan), then joined: not a join of every item row
PER_DATASET_SQL = f"""
SELECT d.id, coalesce(c.n, 0) FROM {PUBLISHED_DATASETS} d
LEFT JOIN (SELECT dataset_id, count(*) AS n FROM kfm.items GROUP BY dataset_id) c ON c.dataset_id = d.id
ORDER BY d.id
"""
SYNC_HINTS = {"search": "kfm-maint sync --targets search", "graph": "kfm-maint sync --targets graph",
              "cache": "kfm-maint sync --targets cache"}


@pytest.mark.risk("medium")
@pytest.mark.covers("search:alias", "search:field:sync_*", "search:field:content_hash")
def test_search_matches_canonical(postgis: PostgisStore, canonical: PostgisStore, search: SearchStore,
                                  kfm_contract: ContractLoader, kfm_settings: Settings, kfm_partition: Partition,
                                  canonical_digests: SharedDigests) -> None:
    """Search documents (ids, content hashes) equal the published items, but for changes still pending."""
    alias = kfm_contract("search")["alias"]
    side = SearchSide(search, alias)
    expect_in_sync("search", lambda on_diff: bucket_compare(canonical, side, store="search", first_n=first_n(),
                                                            on_diff=on_diff, partition=kfm_partition,
                                                            shared=canonical_digests),
                   postgis, side, kfm_settings, kfm_partition.within(search.where(f"alias {alias}")),
                   "kfm-maint sync --targets search (a broken index: kfm-maint reindex --targets search)")


@pytest.mark.risk("medium")
@pytest.mark.covers("graph:property:Item.sync_*", "graph:property:Item.content_hash")
def test_graph_matches_canonical(postgis: PostgisStore, canonical: PostgisStore, graph: GraphStore,
                                 kfm_settings: Settings, kfm_partition: Partition,
                                 canonical_digests: SharedDigests) -> None:
    """Graph Item nodes (ids, content hashes) equal the published items, but for changes still pending."""
    side = GraphSide(graph)
    expect_in_sync("graph", lambda on_diff: bucket_compare(canonical, side, store="graph", first_n=first_n(),
                                                           on_diff=on_diff, partition=kfm_partition,
                                                           shared=canonical_digests),
                   postgis, side, kfm_settings, kfm_partition.within(graph.where("label Item")),
                   "kfm-maint sync --targets graph")


DATASET_CHANGED_SQL = """
SELECT d.id, GREATEST(d.updated_at, max(i.updated_at)) FROM kfm.datasets d
LEFT JOIN kfm.items i ON i.dataset_id = d.id WHERE d.id = ANY(%s) GROUP BY d.id
"""


@pytest.mark.risk("low")
@pytest.mark.covers("cache:summary_field:item_count", "cache:view_column:*.item_count")
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
@pytest.mark.covers("postgis:state:kfm_ops.sync_watermarks")
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
