"""``kfm-maint cache rebuild``: per-dataset stats and Redis summaries from the canonical store.

Readers never see an empty or half-built cache: the stats view is refreshed
CONCURRENTLY (the old rows stay readable until the new ones commit); each Redis
summary is replaced in one MULTI/EXEC; the summary index is built under a
temporary key and RENAMEd over the live one (atomic); summaries of datasets that
left are deleted only after that swap. Unchanged summaries are not rewritten.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from kfm_ops import contracts
from kfm_ops.hub import ServiceHub
from maintenance.actions.derive import record_watermark, run_id_of
from maintenance.runner import Plan

SUMMARY_SQL = """
SELECT s.dataset_id, d.title, s.item_count, s.restricted_count,
       CASE WHEN s.extent IS NULL THEN '' ELSE
         concat_ws(',', round(ST_XMin(s.extent)::numeric, 6), round(ST_YMin(s.extent)::numeric, 6),
                        round(ST_XMax(s.extent)::numeric, 6), round(ST_YMax(s.extent)::numeric, 6)) END AS extent_bbox,
       s.newest_update
FROM kfm_cache.dataset_stats s JOIN kfm.datasets d ON d.id = s.dataset_id ORDER BY s.dataset_id
"""


def summary_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


class CacheRebuild:
    name = "cache-rebuild"
    stores = ("cache",)
    verify_markers = "cache"

    def __init__(self, *, targets: list[str] | None = None) -> None:
        self.targets = targets or ["stats", "summaries"]

    def plan(self, hub: ServiceHub) -> Plan:
        reader = hub.client("postgis")
        contract = contracts.load("cache", hub.settings.contracts_dir)["redis"]
        populated = reader.execute(
            "SELECT ispopulated FROM pg_matviews WHERE schemaname = 'kfm_cache' AND matviewname = 'dataset_stats'"
        ).fetchone()
        datasets = reader.execute("SELECT count(*) FROM kfm.datasets WHERE status = 'published'").fetchone()[0]  # type: ignore[index]
        existing = hub.client("cache").scard(contract["index_key"]) if "summaries" in self.targets else 0
        where_pg = hub.settings.postgis.where if hub.settings.postgis else "?"
        where_cache = hub.settings.cache.where if hub.settings.cache else "?"
        return Plan(
            what=f"rebuild cache targets {','.join(self.targets)} for {datasets} published datasets",
            where=([f"postgis {where_pg}: kfm_cache.dataset_stats"] if "stats" in self.targets else [])
            + ([f"redis {where_cache}: {contract['summary_key']}"] if "summaries" in self.targets else []),
            how_much={"datasets": datasets, "summaries_now": existing,
                      "view_populated": bool(populated and populated[0])},
            rollback="the cache is derived: re-run after fixing the canonical store; keys expire by TTL",
            steps=(["REFRESH MATERIALIZED VIEW CONCURRENTLY kfm_cache.dataset_stats"] if "stats" in self.targets
                   else []) + (["replace changed summaries (MULTI/EXEC each)", "RENAME the new index over the old",
                                "delete summaries of datasets that left", "write kfm:cache:meta"]
                               if "summaries" in self.targets else []),
            details={"populated": bool(populated and populated[0])},
        )

    def apply(self, hub: ServiceHub, plan: Plan, progress: Callable[[str, int, int | None], None]) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        control = hub.writer("postgis")
        run_id = run_id_of(control)
        if "stats" in self.targets:
            # CONCURRENTLY needs a populated view; the very first fill cannot be concurrent.
            concurrently = "CONCURRENTLY " if plan.details["populated"] else ""
            control.execute(f"REFRESH MATERIALIZED VIEW {concurrently}kfm_cache.dataset_stats")
            counts["stats_refreshed"] = 1
        if "summaries" in self.targets:
            counts.update(self._summaries(hub, run_id, progress))
        return counts

    def _summaries(self, hub: ServiceHub, run_id: str | None,
                   progress: Callable[[str, int, int | None], None]) -> dict[str, Any]:
        contract = contracts.load("cache", hub.settings.contracts_dir)["redis"]
        redis = hub.writer("cache")
        control = hub.writer("postgis")
        rows = control.execute(SUMMARY_SQL).fetchall()
        ttl = int(contract["summary_ttl_seconds"])
        changed = unchanged = 0
        watermark = None
        staging = f"{contract['index_key']}:building:{run_id}"
        redis.delete(staging)
        for n, (dataset_id, title, item_count, restricted, bbox, newest) in enumerate(rows, 1):
            key = contract["summary_key"].format(dataset_id=dataset_id)
            content = {"dataset_id": dataset_id, "title": title, "item_count": item_count,
                       "restricted_count": restricted, "extent_bbox": bbox}
            digest = summary_hash(content)
            watermark = max(watermark, newest) if watermark and newest else (newest or watermark)
            if redis.hget(key, "content_hash") == digest:
                redis.expire(key, ttl)  # same content: only the TTL moves
                unchanged += 1
            else:
                pipe = redis.pipeline(transaction=True)
                pipe.delete(key)
                pipe.hset(key, mapping={**{k: str(v) for k, v in content.items()}, "content_hash": digest,
                                        "built_at": str(int(time.time())), "run_id": str(run_id)})
                pipe.expire(key, ttl)
                pipe.execute()
                changed += 1
            redis.sadd(staging, dataset_id)
            progress("summaries", n, len(rows))
        previous = redis.smembers(contract["index_key"])
        if rows:
            redis.rename(staging, contract["index_key"])
        else:
            redis.delete(contract["index_key"])
        current = {r[0] for r in rows}
        gone = sorted(previous - current)
        for dataset_id in gone:
            redis.delete(contract["summary_key"].format(dataset_id=dataset_id))
        mark = watermark.isoformat() if watermark else ""
        if changed or gone or redis.hget(contract["meta_key"], "watermark") != mark:
            redis.hset(contract["meta_key"], mapping={"watermark": mark, "run_id": str(run_id),
                                                      "built_at": str(int(time.time()))})
            redis.hincrby(contract["meta_key"], "generation", 1)
        record_watermark(control, "cache", watermark, run_id)
        return {"summaries_changed": changed, "summaries_unchanged": unchanged, "summaries_deleted": len(gone)}
