"""The lag-aware verdict the consistency and content checks share: due differences fail, pending ones are reported.

A healthy production writes all day: a difference whose canonical change is newer than the
store's sync watermark (less a margin for transactions in flight) and younger than the
freshness SLA is *pending* — a ``PendingChanges`` warning and a metric, not a failure
(docs/contracts.md, "Pending versus due").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import datetime, timedelta

from kfm_ops.compare import Diff
from kfm_ops.consistency import DerivedSide, Lag, classify
from kfm_ops.pytest_plugin.assertions import fail_with, figure, first_n
from kfm_ops.settings import Settings
from kfm_ops.stores.postgis import PostgisStore

CLASSIFY_MAX = 200_000
"""Differences beyond this many are not dated one by one: a store that far off is not lagging, it is broken."""


class PendingChanges(UserWarning):
    """Differences the store is not yet due to have (newer than its last sync, younger than the SLA)."""


def expect_in_sync(store: str, compared: Callable[[Callable[[str, str], None]], Diff], postgis: PostgisStore,
                   side: DerivedSide, settings: Settings, where: str, hint: str, *, metric: str = "consistency_items",
                   details: Callable[[], list[str]] | None = None,
                   related: Callable[[list[str]], dict[str, datetime]] | None = None) -> None:
    """Fail on the differences ``compared(on_diff)`` finds that are due; report the pending ones.

    ``store`` names the watermark (search, graph, cache); ``details`` lines replace the ids in a
    failure (the differing fields of stale records); ``related`` dates what records depend on
    (:func:`kfm_ops.consistency.classify`)."""
    __tracebackhide__ = True
    differences: list[tuple[str, str]] = []
    diff = compared(lambda kind, i: differences.append((kind, i)) if len(differences) < CLASSIFY_MAX else None)
    if diff.clean:
        _figures(metric, store, diff, None)
        return
    watermark, now = postgis.one("SELECT (SELECT watermark FROM kfm_ops.sync_watermarks WHERE store = %s), now()",
                                 (store,))
    lag = classify(differences if diff.total <= CLASSIFY_MAX else [], postgis, side, watermark=watermark, now=now,
                   max_lag=timedelta(seconds=settings.checks.max_freshness_lag_seconds),
                   margin=timedelta(seconds=settings.checks.transaction_margin_seconds), related=related)
    _figures(metric, store, diff, lag if diff.total <= CLASSIFY_MAX else None)
    pending = lag.pending_count
    if pending:
        warnings.warn(f"{store}: {pending} differences pending (changed after the last sync at {watermark}, "
                      "within the freshness SLA)", PendingChanges, stacklevel=1)
    if diff.total > pending:
        due = ", ".join(f"{len(ids)} {kind}" for kind, ids in lag.due.items() if ids) or f"{diff.total} differences"
        ids = [i for ids in lag.due.values() for i in ids] or diff.missing_ids + diff.orphaned_ids + diff.stale_ids
        due_ids = set(ids)
        lines = [line for line in (details() if details else []) if line.split(" ", 1)[0] in due_ids]
        shown = lines + [i for i in ids if i not in {line.split(" ", 1)[0] for line in lines}]
        fail_with(f"{diff.store}: {due} older than the last sync or the SLA (and {pending} more pending)", where,
                  shown, hint, total=diff.total - pending, first_n=3 * first_n())


def _figures(metric: str, store: str, diff: Diff, lag: Lag | None) -> None:
    """kfm_<metric>{store, kind}: due differences by kind (what alerts), pending ones, records compared."""
    for kind in ("missing", "orphaned", "stale"):
        figure(metric, len(lag.due[kind]) if lag else getattr(diff, kind), store=store, kind=kind)
    figure(metric, lag.pending_count if lag else 0, store=store, kind="pending")
    figure(metric, diff.compared, store=store, kind="compared")
