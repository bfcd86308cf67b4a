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


def migrations(override: Path | None = None) -> list[Path]:
    """The canonical-schema migrations, in the order they apply."""
    return sorted((directory(override) / "postgis").glob("*.sql"))

