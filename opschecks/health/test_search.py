"""OpenSearch health: cluster status, the contract alias, primary shards, disk watermarks."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.stores.search import SearchStore
from kfm_ops.stores.search.cluster import watermark_exceeded

WATERMARKS = ("high", "flood_stage")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_cluster_health(search: SearchStore) -> None:
    """Cluster status is green (yellow only when KFM_SEARCH__ALLOW_YELLOW, e.g. a single node)."""
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
    shards = search.client.cat.shards(format="json", h="index,shard,prirep,state")
    bad = sorted(f"{s['index']}[{s['shard']}]" for s in shards if s["prirep"] == "p" and s["state"] == "UNASSIGNED")
    expect(not bad, f"{len(bad)} primary shards are unassigned", search.where(), bad,
           hint="GET _cluster/allocation/explain; fix the allocation cause or restore the index")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_disk_watermarks(search: SearchStore) -> None:
    """No node's data path has crossed the high or flood-stage disk watermark, and no index is write-blocked."""
    where = search.where()
    settings = search.client.cluster.get_settings(include_defaults=True, flat_settings=True)
    effective = {**settings.get("defaults", {}), **settings.get("persistent", {}), **settings.get("transient", {})}
    marks = {m: effective[f"cluster.routing.allocation.disk.watermark.{m}"] for m in WATERMARKS}
    stats = search.client.nodes.stats(metric="fs")
    crossed = []
    for node in stats["nodes"].values():
        total = node["fs"]["total"]
        for mark in WATERMARKS:
            over, detail = watermark_exceeded(marks[mark], total["total_in_bytes"], total["available_in_bytes"])
            if over:
                crossed.append(f"{node['name']} ({mark}: {detail})")
    expect(not crossed, f"{len(crossed)} disk watermarks crossed", where, crossed,
           hint="free disk space or add capacity; at flood_stage indices become read-only")
    blocks = search.client.indices.get_settings(index="_all", name="index.blocks.read_only_allow_delete",
                                                flat_settings=True)
    blocked = sorted(name for name, body in blocks.items()
                     if str(body.get("settings", {}).get("index.blocks.read_only_allow_delete")).lower() == "true")
    expect(not blocked, f"{len(blocked)} indices are write-blocked by a past flood stage", where, blocked,
           hint='after freeing disk: PUT <index>/_settings {"index.blocks.read_only_allow_delete": null}')
