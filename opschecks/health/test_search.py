"""OpenSearch health, node by node: cluster status, the contract alias, primary and replica shards, disk
watermarks, heap pressure."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.settings import Settings
from kfm_ops.stores.search import SearchStore
from kfm_ops.stores.search.cluster import watermark_exceeded
from kfm_ops.stores.search.nodes import data_nodes, explain, heap_pressure, node_labels, shards, unassigned

WATERMARKS = ("high", "flood_stage")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_cluster_health(search: SearchStore) -> None:
    """Cluster status is green (yellow — replicas unassigned — only when KFM_SEARCH__ALLOW_YELLOW)."""
    health = search.client.cluster.health(level="indices")
    status = health["status"]
    allowed = ("green", "yellow") if search.section.allow_yellow else ("green",)
    bad = sorted(name for name, index in health.get("indices", {}).items() if index["status"] not in allowed)
    expect(status in allowed,
           f"cluster {health['cluster_name']} is {status} (allowed: {', '.join(allowed)}; "
           f"unassigned shards {health['unassigned_shards']})",
           search.where(), bad,
           hint="GET _cluster/allocation/explain names the cause; red = a primary shard is unassigned")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("search:alias")
def test_search_alias_single_index(search: SearchStore, kfm_contract: ContractLoader) -> None:
    """The contract alias (search.json "alias") resolves to exactly one index."""
    alias = kfm_contract("search")["alias"]
    where = search.where(f"alias {alias}")
    expect(search.client.indices.exists_alias(name=alias), f"alias {alias} does not exist", where,
           hint="run `kfm-maint reindex --targets search`")
    indices = sorted(search.client.indices.get_alias(name=alias))
    expect(len(indices) == 1, f"alias {alias} resolves to {len(indices)} indices, expected exactly 1", where,
           indices,
           hint="searches return duplicates; run `kfm-maint reindex --targets search` to swap the alias atomically")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_no_unassigned_primaries(search: SearchStore) -> None:
    """No primary shard of any index is unassigned."""
    bad = [f"{s.index}[{s.shard}]" + (f" ({s.reason})" if s.reason else "")
           for s in unassigned(shards(search.client), primary=True)]
    expect(not bad, f"{len(bad)} primary shards are unassigned", search.where(), bad,
           hint="GET _cluster/allocation/explain; fix the allocation cause or restore the index")


@pytest.mark.smoke
@pytest.mark.risk("medium")
def test_search_no_unassigned_replicas(search: SearchStore) -> None:
    """Every replica shard is assigned (redundancy as the indices ask for it), unless KFM_SEARCH__ALLOW_YELLOW.

    An unassigned primary is the other check's (data unavailable); an unassigned replica means one node
    more lost loses data. The failure names each copy with the cluster's reason (NODE_LEFT, …) and its
    allocation explanation of the first.
    """
    if search.section.allow_yellow:
        pytest.skip("KFM_SEARCH__ALLOW_YELLOW: unassigned replicas are accepted (e.g. a single-node cluster)")
    missing = unassigned(shards(search.client), primary=False)
    if missing:
        nodes = data_nodes(search.client)
        first = explain(search.client, missing[0])
        expect(False, f"{len(missing)} replica shards are unassigned ({nodes} data nodes); first: {first}",
               search.where(), [s.label() for s in missing],
               hint="a node is down (NODE_LEFT: bring it back), or an index asks for more copies than there are "
               "data nodes (lower its number_of_replicas or add nodes); GET _cluster/allocation/explain")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_heap_pressure(search: SearchStore, kfm_settings: Settings) -> None:
    """No node's old-generation heap is above max_search_heap_ratio (what it keeps after collections)."""
    limit = kfm_settings.checks.max_search_heap_ratio
    pressure = heap_pressure(search.client)
    over = sorted(f"{node} ({ratio:.0%})" for node, ratio in pressure.items() if ratio > limit)
    expect(not over, f"{len(over)} of {len(pressure)} nodes have heap pressure above {limit:.0%}", search.where(),
           over, hint="long GC pauses and tripped circuit breakers follow: find the heavy queries or aggregations "
           "(GET _nodes/stats/breaker), raise the heap, or add nodes")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_disk_watermarks(search: SearchStore) -> None:
    """No node's data path has crossed the high or flood-stage disk watermark, and no index is write-blocked."""
    where = search.where()
    settings = search.client.cluster.get_settings(include_defaults=True, flat_settings=True)
    effective = {**settings.get("defaults", {}), **settings.get("persistent", {}), **settings.get("transient", {})}
    marks = {m: effective[f"cluster.routing.allocation.disk.watermark.{m}"] for m in WATERMARKS}
    stats = search.client.nodes.stats(metric="fs")
    labels = node_labels(search.client)
    crossed = []
    for node_id, node in stats["nodes"].items():
        total = node["fs"]["total"]
        for mark in WATERMARKS:
            over, detail = watermark_exceeded(marks[mark], total["total_in_bytes"], total["available_in_bytes"])
            if over:
                crossed.append(f"{labels.get(node_id, node['name'])} ({mark}: {detail})")
    expect(not crossed, f"{len(crossed)} disk watermarks crossed", where, crossed,
           hint="free disk space or add capacity; at flood_stage indices become read-only")
    blocks = search.client.indices.get_settings(index="_all", name="index.blocks.read_only_allow_delete",
                                                flat_settings=True)
    blocked = sorted(name for name, body in blocks.items()
                     if str(body.get("settings", {}).get("index.blocks.read_only_allow_delete")).lower() == "true")
    expect(not blocked, f"{len(blocked)} indices are write-blocked by a past flood stage", where, blocked,
           hint='after freeing disk: PUT <index>/_settings {"index.blocks.read_only_allow_delete": null}')
