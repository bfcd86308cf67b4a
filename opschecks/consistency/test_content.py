"""Derived records field by field: each compared with the record the derive code makes from the canonical store now.

The content-hash comparisons (test_cross_store) are the fast path; a record edited in place keeps
its copied hash. These read the records themselves (kfm_ops.content): every search document, every
graph Item node with its relationships, every cache summary. They read each store in full, so they
are not smoke. Differences from changes still pending (newer than the store's watermark, younger
than the SLA) are reported, not failed, as in test_cross_store.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kfm_ops import content, derive
from kfm_ops.compare import Diff
from kfm_ops.consistency import GraphSide, SearchSide
from kfm_ops.pytest_plugin.assertions import fail_with, first_n
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.pytest_plugin.lag import expect_in_sync
from kfm_ops.settings import Settings
from kfm_ops.stores.cache import CacheStore, summary_key
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PostgisStore
from kfm_ops.stores.search import SearchStore


@pytest.mark.risk("medium")
def test_search_documents_match_their_derivation(postgis: PostgisStore, search: SearchStore, sensitivity_grid: float,
                                                 kfm_contract: ContractLoader, kfm_settings: Settings) -> None:
    """Every search document equals, field by field, the document the reindex would write now."""
    alias = kfm_contract("search")["alias"]
    found: list[content.ContentDiff] = []

    def compared(on_diff: Callable[[str, str], None]) -> Diff:
        found.append(content.search(postgis, search, alias, sensitivity_grid, first_n=first_n(), on_diff=on_diff))
        return found[-1].diff

    expect_in_sync("search", compared, postgis, SearchSide(search, alias), kfm_settings,
                   search.where(f"alias {alias} (documents)"), "kfm-maint reindex --targets search",
                   metric="content_records", details=lambda: found[-1].stale_lines())


@pytest.mark.risk("medium")
def test_graph_items_match_their_derivation(postgis: PostgisStore, graph: GraphStore, sensitivity_grid: float,
                                            kfm_settings: Settings) -> None:
    """Every Item node equals, properties and relationships, the node the graph sync would leave now."""
    found: list[content.ContentDiff] = []

    def compared(on_diff: Callable[[str, str], None]) -> Diff:
        found.append(content.graph(postgis, graph, sensitivity_grid, first_n=first_n(), on_diff=on_diff))
        return found[-1].diff

    expect_in_sync("graph", compared, postgis, GraphSide(graph), kfm_settings,
                   graph.where("label Item (properties and relationships)"),
                   "kfm-maint reindex --targets graph (add --prune for orphans)",
                   metric="content_records", details=lambda: found[-1].stale_lines())


@pytest.mark.risk("low")
def test_cache_summaries_match_their_derivation(postgis: PostgisStore, cache: CacheStore,
                                                kfm_contract: ContractLoader) -> None:
    """Every cache summary hash equals, field by field, the one the rebuild would write from the stats view."""
    template = kfm_contract("cache")["redis"]["summary_key"]
    expected = [(c["dataset_id"], derive.summary_record(c)) for c, _newest in derive.cache_summaries(postgis)]
    actual = {}
    for dataset_id, _record in expected:
        stored = dict(cache.client.hgetall(summary_key(template, dataset_id)))
        for volatile in ("built_at", "run_id"):  # the rebuild's own run, not content
            stored.pop(volatile, None)
        if stored:
            actual[dataset_id] = stored
    result = content.cache(expected, actual, first_n=first_n())
    if not result.diff.clean:
        fail_with(result.diff.summary(), cache.where(f"key {template}"),
                  result.stale_lines() + result.diff.missing_ids, "kfm-maint cache rebuild", total=result.diff.total)
