"""Derived records field by field: each compared with the record the derive code makes from the canonical store now.

The content-hash comparisons (test_cross_store) are the fast path; a record edited in place keeps
its copied hash. These read the records themselves (kfm_ops.content): the search documents, the
graph Item nodes with their relationships, every cache summary. Up to KFM_CHECKS__CONTENT_MAX_RECORDS
items they read every record; a larger catalog is read one bucket range per run (a scrub slice,
the next one every KFM_CHECKS__CONTENT_SLICE_SECONDS: an hourly schedule covers the whole catalog
every N runs; CONTENT_MAX_RECORDS=0 reads it all every run, e.g. nightly), named in every failure.
Not smoke.
Differences from changes still pending (newer than the store's watermark, younger than the SLA)
are reported, not failed, as in test_cross_store.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import timedelta

import pytest

from kfm_ops import content, derive
from kfm_ops.compare import Diff
from kfm_ops.consistency import GraphSide, SearchSide, derived_link_times, pending
from kfm_ops.partition import Slice
from kfm_ops.pytest_plugin.assertions import expect, fail_with, first_n
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.pytest_plugin.lag import PendingChanges, expect_in_sync
from kfm_ops.settings import Settings
from kfm_ops.stores.cache import CacheStore, summary_key
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PostgisStore
from kfm_ops.stores.search import SearchStore

SLICE = "scrub slice"  # how a failure names the share of the catalog it read (KFM_CHECKS__CONTENT_MAX_RECORDS)


@pytest.mark.risk("medium")
@pytest.mark.covers("search:field:*")
def test_search_documents_match_their_derivation(postgis: PostgisStore, search: SearchStore, sensitivity_grid: float,
                                                 kfm_contract: ContractLoader, kfm_settings: Settings,
                                                 content_slice: Slice) -> None:
    """Every search document (of this run's scrub slice) equals, field by field, the one the reindex would write."""
    alias = kfm_contract("search")["alias"]
    found: list[content.ContentDiff] = []

    def compared(on_diff: Callable[[str, str], None]) -> Diff:
        found.append(content.search(postgis, search, alias, sensitivity_grid, first_n=first_n(), on_diff=on_diff,
                                    partition=content_slice))
        return found[-1].diff

    expect_in_sync("search", compared, postgis, SearchSide(search, alias), kfm_settings,
                   content_slice.within(search.where(f"alias {alias} (documents)"), SLICE),
                   "kfm-maint reindex --targets search",
                   metric="content_records", details=lambda: found[-1].stale_lines())


@pytest.mark.risk("medium")
@pytest.mark.covers("graph:label:Item", "graph:property:Item.*", "graph:relationship:Item-*")
def test_graph_items_match_their_derivation(postgis: PostgisStore, graph: GraphStore, sensitivity_grid: float,
                                            kfm_settings: Settings, content_slice: Slice) -> None:
    """Every Item node (of this run's scrub slice) equals, properties and relationships, the one the sync leaves."""
    found: list[content.ContentDiff] = []

    def compared(on_diff: Callable[[str, str], None]) -> Diff:
        found.append(content.graph(postgis, graph, sensitivity_grid, first_n=first_n(), on_diff=on_diff,
                                   partition=content_slice))
        return found[-1].diff

    expect_in_sync("graph", compared, postgis, GraphSide(graph), kfm_settings,
                   content_slice.within(graph.where("label Item (properties and relationships)"), SLICE),
                   "kfm-maint sync --targets graph (a broken graph: kfm-maint reindex --targets graph --prune)",
                   metric="content_records", details=lambda: found[-1].stale_lines(),
                   related=lambda ids: derived_link_times(postgis, graph, ids))


@pytest.mark.risk("low")
@pytest.mark.covers("cache:summary_field:*", "cache:index_key")
def test_cache_summaries_match_their_derivation(postgis: PostgisStore, cache: CacheStore,
                                                kfm_contract: ContractLoader) -> None:
    """Every cache summary hash equals, field by field, the one the rebuild would write from the stats view; the
    index set lists exactly the summarized datasets."""
    redis_contract = kfm_contract("cache")["redis"]
    template = redis_contract["summary_key"]
    expected = {c["dataset_id"]: derive.summary_record(c) for c, _newest in derive.cache_summaries(postgis)}
    actual = {}
    for dataset_id in expected:
        stored = dict(cache.client.hgetall(summary_key(template, dataset_id)))
        for volatile in ("built_at", "run_id"):  # the rebuild's own run, not content
            stored.pop(volatile, None)
        if stored:
            actual[dataset_id] = stored
    index_key = redis_contract["index_key"]
    indexed = set(cache.client.smembers(index_key))
    expect(indexed == set(expected), f"the index set {index_key} differs from the summarized datasets",
           cache.where(f"key {index_key}"),
           [f"+{d}" for d in sorted(indexed - set(expected))] + [f"-{d}" for d in sorted(set(expected) - indexed)],
           "kfm-maint cache rebuild")
    result = content.records(expected, actual, store="cache summaries", first_n=first_n())
    if not result.diff.clean:
        fail_with(result.diff.summary(), cache.where(f"key {template}"),
                  result.stale_lines() + result.diff.missing_ids, "kfm-maint cache rebuild", total=result.diff.total)


@pytest.mark.risk("low")
@pytest.mark.covers("graph:label:Dataset", "graph:label:Activity", "graph:label:Place", "graph:property:Dataset.*",
                    "graph:property:Activity.*", "graph:property:Place.*", "graph:relationship:Activity-USED->Dataset")
def test_graph_reference_nodes_match_their_derivation(postgis: PostgisStore, graph: GraphStore,
                                                      kfm_contract: ContractLoader, kfm_settings: Settings) -> None:
    """The Dataset, Activity and Place nodes and the USED links equal what the graph sync writes (pending aside).

    Pending: a dataset published or retired after the graph's last sync, within the freshness SLA.
    """
    problems: list[tuple[str, set[str]]] = []  # (what differs, the datasets whose change dates it)
    used = {(r["activity"], r["dataset"]) for r in postgis.dicts(derive.USED_SQL)}
    linked = {(r["a"], r["d"])
              for r in graph.run("MATCH (a:Activity)-[:USED]->(d:Dataset) RETURN a.id AS a, d.id AS d")}
    canonical_used = postgis.rows("SELECT subject, object FROM kfm.prov_links WHERE relation = 'used'")
    datasets_of: dict[str, set[str]] = {}
    for activity, dataset in [*canonical_used, *linked]:
        datasets_of.setdefault(activity, set()).add(dataset)
    for label, sql in derive.REFERENCE_SQL.items():
        properties = kfm_contract("graph")["labels"][label]["properties"]
        expected = {r["id"]: {p: r.get(p) for p in properties} for r in postgis.dicts(sql)}
        actual = {r["id"]: r["p"] for r in graph.run(f"MATCH (n:{label}) RETURN n.id AS id, properties(n) AS p")}
        found = content.records(expected, actual, store=f"graph label {label}", first_n=first_n())
        diff = found.diff
        for line, node in [*((f"{label} {x}", x.split(" ", 1)[0]) for x in found.stale_lines()),
                           *((f"{label} {i} (missing)", i) for i in diff.missing_ids),
                           *((f"{label} {i} (orphaned)", i) for i in diff.orphaned_ids)]:
            problems.append((line, {node} if label == "Dataset" else datasets_of.get(node, set())
                             if label == "Activity" else set()))
    problems += [(f"USED {a} -> {d} (missing)", {d}) for a, d in sorted(used - linked)]
    problems += [(f"USED {a} -> {d} (not derived)", {d}) for a, d in sorted(linked - used)]
    if not problems:
        return
    dated = postgis.dataset_times(sorted({d for _line, related in problems for d in related}))
    watermark, now = postgis.one("SELECT (SELECT watermark FROM kfm_ops.sync_watermarks WHERE store = 'graph'), "
                                 "now()")
    checks = kfm_settings.checks

    def waiting(related: set[str]) -> bool:
        changed = max((dated[d] for d in related if d in dated), default=None)
        return pending(changed, watermark=watermark, now=now,
                       margin=timedelta(seconds=checks.transaction_margin_seconds),
                       max_lag=timedelta(seconds=checks.max_freshness_lag_seconds))

    due = [line for line, related in problems if not waiting(related)]
    if len(due) < len(problems):
        warnings.warn(f"graph: {len(problems) - len(due)} reference differences pending (a dataset changed after "
                      f"the last sync at {watermark}, within the freshness SLA)", PendingChanges, stacklevel=1)
    expect(not due, f"{len(due)} graph reference nodes or links differ from their derivation",
           graph.where("labels Dataset, Activity, Place; USED"), due, "kfm-maint sync --targets graph")
