"""kfm-maint actions: a registry of name → class, imported lazily."""

from __future__ import annotations

from typing import Any

from kfm_ops.registry import resolve

REGISTRY: dict[str, str] = {
    "migrate": "maintenance.actions.schema:Migrate",
    "sample-data-init": "maintenance.actions.sample_data:SampleDataInit",
    "reindex-search": "maintenance.actions.search:ReindexSearch",
    "reindex-rollback": "maintenance.actions.search:RollbackSearch",
    "sync-graph": "maintenance.actions.graph:SyncGraph",
    "cache-rebuild": "maintenance.actions.cache:CacheRebuild",
    "user-create": "maintenance.actions.users:UserCreate",
}


def action_class(name: str) -> Any:
    """The action class registered as ``name``."""
    return resolve(REGISTRY, name, "action")
