"""OpenSearch health: cluster status, the contract alias, primary shards, disk watermarks."""

from __future__ import annotations

from typing import Any

import pytest

from kfm_ops.checks_support import call, expect, watermark_exceeded

WATERMARKS = ("high", "flood_stage")


def _where(kfm_settings: Any) -> str:
    return f"opensearch {kfm_settings.search.where}"


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_cluster_health(search: Any, kfm_settings: Any) -> None:
    """Cluster status is green (yellow only when KFM_SEARCH__ALLOW_YELLOW, e.g. a single node)."""
    where = _where(kfm_settings)
    health = call("cluster health failed", where, search.cluster.health, level="indices")
    status = health["status"]
    allowed = ("green", "yellow") if kfm_settings.search.allow_yellow else ("green",)
    bad = sorted(name for name, index in health.get("indices", {}).items() if index["status"] not in allowed)
    expect(status in allowed,
           f"cluster {health['cluster_name']} is {status} (allowed: {', '.join(allowed)}; "
           f"unassigned shards {health['unassigned_shards']})",
           where, bad, first_n=kfm_settings.checks.first_n,
           hint="GET _cluster/allocation/explain names the cause; red = a primary shard is unassigned")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_alias_single_index(search: Any, kfm_settings: Any, kfm_contract: Any) -> None:
    """The contract alias (search.json "alias") resolves to exactly one index."""
    alias = kfm_contract("search")["alias"]
    where = f"{_where(kfm_settings)} alias {alias}"
    exists = call("alias lookup failed", where, search.indices.exists_alias, name=alias)
    expect(exists, f"alias {alias} does not exist", where, hint="run `kfm-maint reindex --targets search`")
    indices = sorted(call("alias lookup failed", where, search.indices.get_alias, name=alias))
    expect(len(indices) == 1, f"alias {alias} resolves to {len(indices)} indices, expected exactly 1", where,
           indices, first_n=kfm_settings.checks.first_n,
           hint="searches return duplicates; run `kfm-maint reindex --targets search` to swap the alias atomically")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_no_unassigned_primaries(search: Any, kfm_settings: Any) -> None:
    """No primary shard of any index is unassigned."""
    where = _where(kfm_settings)
    shards = call("_cat/shards failed", where, search.cat.shards, format="json", h="index,shard,prirep,state")
    bad = sorted(f"{s['index']}[{s['shard']}]" for s in shards if s["prirep"] == "p" and s["state"] == "UNASSIGNED")
    expect(not bad, f"{len(bad)} primary shards are unassigned", where, bad, first_n=kfm_settings.checks.first_n,
           hint="GET _cluster/allocation/explain; fix the allocation cause or restore the index")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_disk_watermarks(search: Any, kfm_settings: Any) -> None:
    """No node's data path has crossed the high or flood-stage disk watermark, and no index is write-blocked."""
    where = _where(kfm_settings)
    first_n = kfm_settings.checks.first_n
    settings = call("cluster settings failed", where, search.cluster.get_settings,
                    include_defaults=True, flat_settings=True)
    effective = {**settings.get("defaults", {}), **settings.get("persistent", {}), **settings.get("transient", {})}
    marks = {m: effective[f"cluster.routing.allocation.disk.watermark.{m}"] for m in WATERMARKS}
    stats = call("node stats failed", where, search.nodes.stats, metric="fs")
    crossed = []
    for node in stats["nodes"].values():
        total = node["fs"]["total"]
        for mark in WATERMARKS:
            over, detail = watermark_exceeded(marks[mark], total["total_in_bytes"], total["available_in_bytes"])
            if over:
                crossed.append(f"{node['name']} ({mark}: {detail})")
    expect(not crossed, f"{len(crossed)} disk watermarks crossed", where, crossed, first_n=first_n,
           hint="free disk space or add capacity; at flood_stage indices become read-only")
    blocks = call("index settings failed", where, search.indices.get_settings,
                  index="_all", name="index.blocks.read_only_allow_delete", flat_settings=True)
    blocked = sorted(name for name, body in blocks.items()
                     if str(body.get("settings", {}).get("index.blocks.read_only_allow_delete")).lower() == "true")
    expect(not blocked, f"{len(blocked)} indices are write-blocked by a past flood stage", where, blocked,
           first_n=first_n,
           hint='after freeing disk: PUT <index>/_settings {"index.blocks.read_only_allow_delete": null}')
