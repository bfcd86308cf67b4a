"""Assertion helpers for the checks in ``opschecks``.

Every failure a check reports is built by :func:`fail_with`: one message that
says what is wrong, where (host, index, table, label, key), the first N
offending ids (``KFM_CHECKS__FIRST_N``) and a hint at the fix. The helpers hide
themselves from tracebacks (``__tracebackhide__``) so the report shows the
check's own line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest

from kfm_ops.clients import describe
from kfm_ops.redact import redact

# Thresholds the settings do not (yet) carry; see the checks that use them.
REDIS_SCAN_COUNT = 500
"""COUNT hint of each SCAN step over the summary keys."""

REDIS_SCAN_MAX_KEYS = 100_000
"""Upper bound of summary keys one check run examines (the scan stays bounded)."""

NEO4J_MAJOR = 5
"""The Neo4j major version the graph contract is written for."""


def format_ids(ids: Iterable[Any], first_n: int, total: int | None = None) -> str:
    """``first 3 of 7: a, b, c`` (or ``2: a, b`` when all are shown)."""
    shown: list[str] = []
    count = 0
    for item in ids:
        count += 1
        if len(shown) < first_n:
            shown.append(str(item))
    total = count if total is None else total
    if total == 0:
        return "none"
    prefix = f"first {len(shown)} of {total}" if total > len(shown) else f"{total}"
    return f"{prefix}: {', '.join(shown)}"


def fail_with(what: str, where: str, ids: Iterable[Any] = (), hint: str = "", *,
              first_n: int = 10, total: int | None = None) -> NoReturn:
    """Fail the check with one message: what, where, first N ids, hint."""
    __tracebackhide__ = True
    ids = list(ids)
    parts = [f"{what} [where: {where}]"]
    if ids or total:
        parts.append(f"offending ids ({format_ids(ids, first_n, total)})")
    if hint:
        parts.append(f"hint: {hint}")
    pytest.fail(redact(" — ".join(parts)), pytrace=False)


def expect(condition: Any, what: str, where: str, ids: Iterable[Any] = (), hint: str = "", *,
           first_n: int = 10, total: int | None = None) -> None:
    """:func:`fail_with` unless ``condition`` holds."""
    __tracebackhide__ = True
    if not condition:
        fail_with(what, where, ids, hint, first_n=first_n, total=total)


@contextmanager
def service_errors(what: str, where: str, hint: str = "") -> Iterator[None]:
    """Turn a driver error inside the block into a check failure naming ``what`` and ``where``."""
    __tracebackhide__ = True
    reason = ""
    try:
        yield
    except pytest.fail.Exception:
        raise
    except Exception as exc:  # noqa: BLE001 — any driver error is a failed check, named
        reason = describe(exc)
    if reason:  # failed outside the except block: the report shows no chained driver traceback
        fail_with(f"{what}: {reason}", where, hint=hint)


def call(what: str, where: str, fn: Callable[..., Any], *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, a driver error failing the check with what/where/hint."""
    __tracebackhide__ = True
    with service_errors(what, where, hint):
        return fn(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover — service_errors re-raises


def version_tuple(text: str) -> tuple[int, ...]:
    """``"3.4.2dev"`` → ``(3, 4, 2)``; the numeric dotted prefix of a version string."""
    match = re.match(r"\d+(?:\.\d+)*", text.strip())
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in match.group(0).split("."))


def parse_byte_size(text: str) -> int:
    """OpenSearch byte sizes (``10gb``, ``500mb``, ``123b``) → bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([kmgtp]?b?)\s*", text.lower())
    if not match:
        raise ValueError(f"not a byte size: {text!r}")
    unit = match.group(2).rstrip("b")
    factor = 1024 ** ("kmgtp".index(unit) + 1) if unit else 1
    return int(float(match.group(1)) * factor)


def watermark_exceeded(setting: str, total_bytes: int, available_bytes: int) -> tuple[bool, str]:
    """Whether a disk watermark (``"90%"``, ``"0.9"`` or a free-space size ``"10gb"``) is crossed.

    Returns the verdict and a description of the comparison for messages.
    """
    used = total_bytes - available_bytes
    value = setting.strip().lower()
    if value.endswith("%") or re.fullmatch(r"[\d.]+", value):
        ratio = float(value.rstrip("%")) / 100 if value.endswith("%") else float(value)
        used_ratio = used / total_bytes if total_bytes else 0.0
        return used_ratio >= ratio, f"disk used {used_ratio:.1%} vs watermark {setting}"
    minimum_free = parse_byte_size(value)
    return available_bytes <= minimum_free, f"disk free {available_bytes} B vs watermark {setting} free"


def flatten_mapping(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """``{"title": {"type": "text", "fields": {"raw": …}}}`` → ``{"title": {...}, "title.raw": {...}}``.

    Each value keeps the field's own parameters (without ``properties`` / ``fields``).
    """
    flat: dict[str, dict[str, Any]] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        own = {k: v for k, v in spec.items() if k not in ("properties", "fields")}
        own.setdefault("type", "object" if "properties" in spec else None)
        flat[path] = own
        if "properties" in spec:
            flat.update(flatten_mapping(spec["properties"], f"{path}."))
        if "fields" in spec:
            flat.update(flatten_mapping(spec["fields"], f"{path}."))
    return flat


def decode_summary(kind: str, raw: Any) -> dict[str, Any] | None:
    """A cache summary value as a dict (a Redis hash, or a JSON string); None if neither."""
    if kind == "hash":
        return dict(raw or {})
    if kind == "string":
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            return None
        return value if isinstance(value, dict) else None
    return None


def key_pattern(template: str) -> str:
    """``kfm:summary:dataset:{dataset_id}`` → the SCAN pattern ``kfm:summary:dataset:*``."""
    return re.sub(r"\{[^}]+\}", "*", template)


def where(settings: Any, service: str, thing: str = "") -> str:
    """``<service> host:port <thing>``: the place a check looked, for its failure message."""
    section = settings.section(service)
    return f"{service} {section.where if section else '?'}" + (f" {thing}" if thing else "")
