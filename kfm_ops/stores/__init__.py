"""The rooms: one module (or small package) per store, each a typed client and that store's own logic.

========  ==========================  =============================================
service   room                        what lives there
========  ==========================  =============================================
postgis   :mod:`.postgis`             the canonical store, the published rule, watermarks
search    :mod:`.search`              client, PIT streams, digest, indices/alias, bulk
graph     :mod:`.graph`               client, Item stream, constraints, sync upserts
cache     :mod:`.cache`               client, summary layout and writes
policy    :mod:`.policy`              OPA's data API
llm       :mod:`.llm`                 model listing and a canary completion
========  ==========================  =============================================

A store is read-only unless opened with ``write=True``, and translates its driver's
exceptions into :class:`~kfm_ops.errors.ServiceError` at its boundary.
"""

from __future__ import annotations

from typing import Any

from kfm_ops.registry import resolve
from kfm_ops.settings import SERVICES
from kfm_ops.stores.base import Store

# One store per settings section (kfm_ops.settings.SERVICES): kfm_ops.stores.<name>:<Name>Store.
REGISTRY: dict[str, str] = {name: f"kfm_ops.stores.{name}:{name.capitalize()}Store" for name in SERVICES}


def store_class(name: str) -> type[Store[Any]]:
    """The store class of service ``name`` (imported on first use)."""
    cls: type[Store[Any]] = resolve(REGISTRY, name, "service")
    return cls


__all__ = ["REGISTRY", "Store", "store_class"]
