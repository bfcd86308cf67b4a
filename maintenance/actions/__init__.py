"""kfm-maint actions: a registry of name → class, imported lazily."""

from __future__ import annotations

import importlib
from typing import Any

from kfm_ops.errors import UsageError

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
    try:
        module, _, attr = REGISTRY[name].partition(":")
    except KeyError:
        raise UsageError(f"unknown action {name!r}", hint="known actions: " + ", ".join(REGISTRY)) from None
    return getattr(importlib.import_module(module), attr)
