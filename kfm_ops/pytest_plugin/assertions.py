"""Assertion helpers for checks: one failure message with what, where, the first N ids and a hint.

Every failure a check reports is built by :func:`fail_with`: what is wrong, where
(``store.where(...)``: host, index, table, label, key), the first N offending ids
(``KFM_CHECKS__FIRST_N``, read here, not passed by each check) and a hint at the fix.
The helpers hide themselves from tracebacks (``__tracebackhide__``) so the report
shows the check's own line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NoReturn

import pytest

from kfm_ops.redact import redact

FIRST_N = 10
"""How many offending ids a failure names; the plugin sets it from ``KFM_CHECKS__FIRST_N``."""
_FIGURES: list[list[dict[str, Any]]] = []
"""The running check's figures (the plugin opens the list around each check's call)."""
_FIGURE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def configure(first_n: int) -> None:
    """Set how many offending ids failures name (called by the plugin at configure time)."""
    global FIRST_N
    FIRST_N = first_n


def first_n() -> int:
    """How many offending ids a failure names (for queries that fetch only those)."""
    return FIRST_N


def figure(name: str, value: float, **labels: Any) -> None:
    """Publish a number the running check measured (``kfm_<name>`` in its run's metrics).

    ``figure("consistency_items", 3, store="search", kind="missing")``. Every call of one
    ``name`` should use the same label names. Outside a check it does nothing.
    """
    if not _FIGURE_NAME.match(name):
        raise ValueError(f"figure name must be lower_snake_case, got {name!r}")
    if _FIGURES:
        _FIGURES[-1].append({"name": name, "value": float(value), "labels": {k: str(v) for k, v in labels.items()}})


def collecting(figures: list[dict[str, Any]] | None) -> None:
    """Start (a list) or stop (None) collecting the running check's figures (called by the plugin)."""
    _FIGURES.clear()
    if figures is not None:
        _FIGURES.append(figures)


def format_ids(ids: Iterable[Any], first_n: int | None = None, total: int | None = None) -> str:
    """``first 3 of 7: a, b, c`` (or ``2: a, b`` when all are shown)."""
    limit = FIRST_N if first_n is None else first_n
    shown: list[str] = []
    count = 0
    for item in ids:
        count += 1
        if len(shown) < limit:
            shown.append(str(item))
    total = count if total is None else total
    if total == 0:
        return "none"
    prefix = f"first {len(shown)} of {total}" if total > len(shown) else f"{total}"
    return f"{prefix}: {', '.join(shown)}"


def fail_with(what: str, where: str, ids: Iterable[Any] = (), hint: str = "", *,
              total: int | None = None, first_n: int | None = None) -> NoReturn:
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
           total: int | None = None, first_n: int | None = None) -> None:
    """:func:`fail_with` unless ``condition`` holds."""
    __tracebackhide__ = True
    if not condition:
        fail_with(what, where, ids, hint, total=total, first_n=first_n)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"3.4.2dev"`` → ``(3, 4, 2)``; the numeric dotted prefix of a version string."""
    match = re.match(r"\d+(?:\.\d+)*", text.strip())
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in match.group(0).split("."))
