"""kfm-ops: operational checks and safe maintenance for the KFM backend.

One core — settings → stores → safety gates → report — with two thin faces on it:
the pytest checks in ``opschecks`` and the ``kfm-maint`` actions in ``maintenance``.

The public API — what a deployment's own checks may import — is :data:`__all__`:
the store types its fixtures are annotated with, the assertion helpers, the contract
loader type and the errors. Everything else is private and may change. Names load on
first use (the stores import their drivers).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC: dict[str, str] = {
    # store types (the fixtures postgis, graph, search, cache, policy, llm)
    "PostgisStore": "kfm_ops.stores.postgis",
    "GraphStore": "kfm_ops.stores.graph",
    "SearchStore": "kfm_ops.stores.search",
    "CacheStore": "kfm_ops.stores.cache",
    "PolicyStore": "kfm_ops.stores.policy",
    "LlmStore": "kfm_ops.stores.llm",
    "ServiceHub": "kfm_ops.hub",
    "Settings": "kfm_ops.settings",
    # assertion helpers
    "expect": "kfm_ops.pytest_plugin.assertions",
    "fail_with": "kfm_ops.pytest_plugin.assertions",
    "first_n": "kfm_ops.pytest_plugin.assertions",
    "figure": "kfm_ops.pytest_plugin.assertions",
    "ContractLoader": "kfm_ops.pytest_plugin.fixtures",
    # errors
    "KfmError": "kfm_ops.errors",
    "ServiceError": "kfm_ops.errors",
    "ContractViolation": "kfm_ops.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'kfm_ops' has no attribute {name!r}")
