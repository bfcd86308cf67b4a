"""The KFM contract files: what the harness expects of each store.

The files ship inside the package (so an installed kfm-ops checks without this
repo); ``KFM_CONTRACTS_DIR`` points the harness at a deployment's own copies.
``docs/contracts.md`` explains every field.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from kfm_ops.contracts.identifiers import validate
from kfm_ops.errors import UsageError

BUILTIN = Path(__file__).resolve().parent
NAMES = ("postgis", "search", "graph", "cache", "policy")


def directory(override: Path | None = None) -> Path:
    return Path(override) if override else BUILTIN


@lru_cache(maxsize=32)
def _read(name: str, path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"contract file {str(path)!r} not found", hint="check KFM_CONTRACTS_DIR") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"contract file {str(path)!r} is not valid JSON: {exc}") from None
    validate(name, data, str(path))
    if name == "search":
        for environment in ENVIRONMENTS:  # a bad topology stops the run at load (exit 2), not mid-rebuild
            search_shards(data, environment)
    return data


def load(name: str, override: Path | None = None) -> dict[str, Any]:
    """The contract called ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise UsageError(f"unknown contract {name!r}", hint="known contracts: " + ", ".join(NAMES))
    return _read(name, directory(override) / f"{name}.json")


Box = tuple[float, float, float, float]


def extent(postgis: dict[str, Any]) -> tuple[str, Box, Box]:
    """(name, bbox, crs_bounds) of the postgis contract's ``extent``: where the deployment's geometries lie, and
    the range the CRS allows; each [min x, min y, max x, max y]."""
    declared = postgis.get("extent") or {}
    boxes: list[Box] = []
    for key in ("bbox", "crs_bounds"):
        box = declared.get(key) if isinstance(declared, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)
                and box[0] < box[2] and box[1] < box[3]):
            raise UsageError(f"postgis contract: extent.{key} is {box!r}, not [min x, min y, max x, max y]",
                             hint="declare the deployment's extent in postgis.json (docs/contracts.md)")
        boxes.append((float(box[0]), float(box[1]), float(box[2]), float(box[3])))
    return str(declared.get("name", "the declared extent")), boxes[0], boxes[1]


ENVIRONMENTS = ("dev", "staging", "production")


def search_shards(search: dict[str, Any], environment: str) -> tuple[int, int]:
    """(primaries, replicas) the search contract's ``shards`` gives ``environment``."""
    entry = (search.get("shards") or {}).get(environment)
    primaries = entry.get("primaries") if isinstance(entry, dict) else None
    replicas = entry.get("replicas") if isinstance(entry, dict) else None
    if not (isinstance(primaries, int) and isinstance(replicas, int) and 1 <= primaries <= 1024
            and 0 <= replicas <= 16):
        raise UsageError(f"search contract: shards.{environment} is {entry!r}, not "
                         '{"primaries": 1..1024, "replicas": 0..16}',
                         hint="give every environment its shard topology in search.json (docs/contracts.md)")
    return primaries, replicas


def search_index_settings(search: dict[str, Any], environment: str, *, replicas: int | None = None) -> dict[str, Any]:
    """The settings of a new index for ``environment``: the contract's ``settings`` and its shard topology
    (``replicas`` overrides the contract's replica count: a rebuild loads with none, then raises them)."""
    primaries, wanted = search_shards(search, environment)
    return {**search["settings"], "number_of_shards": primaries,
            "number_of_replicas": wanted if replicas is None else replicas}


def migrations(override: Path | None = None) -> list[Path]:
    """The canonical-schema migrations, in the order they apply."""
    return sorted((directory(override) / "postgis").glob("*.sql"))

