"""Name → implementation registries, imported lazily (service adapters, actions)."""

from __future__ import annotations

import importlib
from typing import Any

from kfm_ops.errors import UsageError


def resolve(registry: dict[str, str], name: str, kind: str) -> Any:
    """Import what ``registry`` maps ``name`` to (``module`` or ``module:attribute``)."""
    try:
        target = registry[name]
    except KeyError:
        raise UsageError(f"unknown {kind} {name!r}", hint=f"known {kind}s: " + ", ".join(registry)) from None
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded
