"""The check-run history: each run of the checks recorded in the harness's own schema (migration 007).

``kfm_ops.check_runs`` holds one row per run (run id, environment, suite, when, how long, exit
code, counts); ``kfm_ops.check_results`` one row per check of a run (outcome, severity, area,
duration, the message and its digest). Check sessions are read-only by construction, so the
history is written after the pytest run, from its JSON report, by ``kfm-maint check``
through a write connection (:func:`writer`: a hub that may write PostGIS only), in one transaction
with the retention.

Retention, enforced at every write: runs older than ``KFM_HISTORY__RETENTION_DAYS`` (90) are
deleted, and of each environment and suite only the newest ``KFM_HISTORY__MAX_RUNS`` (5000)
are kept; their results go with them (ON DELETE CASCADE).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kfm_ops.hub import ServiceHub
from kfm_ops.results import CheckResult
from kfm_ops.settings import PostgisSettings, Settings
from kfm_ops.stores.postgis import PostgisStore

RUNS = "kfm_ops.check_runs"
RESULTS = "kfm_ops.check_results"
MAX_WINDOW = 1000
"""At most this many runs are read for one report."""


@dataclass(frozen=True)
class Stored:
    """One check's result as the history holds it."""

    check: str
    outcome: str
    risk: str
    area: str
    duration: float
    digest: str
    message: str
    hint: str


@dataclass
class Run:
    run_id: str
    environment: str
    suite: str
    selection: str
    started_at: dt.datetime
    duration: float
    exit_code: int
    counts: dict[str, int] = field(default_factory=dict)
    results: dict[str, Stored] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "environment": self.environment, "suite": self.suite,
                "selection": self.selection, "started_at": self.started_at.isoformat(),
                "duration_s": self.duration, "exit_code": self.exit_code, "counts": self.counts}


def writer(settings: Settings, application_name: str) -> ServiceHub:
    """A hub whose only writable store is the history's: ``KFM_HISTORY__DSN`` (a narrow role) or the owner DSN.

    ``writer(...).postgis(write=True)`` is the connection; close the hub when done.
    """
    history = settings.history
    if history.dsn:
        timeouts = {"connect_timeout": settings.postgis.connect_timeout,
                    "query_timeout": settings.postgis.query_timeout} if settings.postgis else {}
        narrow = PostgisSettings(dsn=history.dsn, write_dsn=history.dsn, write_password=history.password, **timeouts)
        settings = settings.model_copy(update={"postgis": narrow})
    return ServiceHub(settings, writes_allowed=True, writable=("postgis",), application_name=application_name)


def record(conn: PostgisStore, *, run_id: str, environment: str, suite: str, selection: str, started: float,
           duration: float, exit_code: int, results: Sequence[CheckResult], counts: dict[str, int],
           retention_days: int, max_runs: int) -> int:
    """Record one run and its results, then apply the retention; returns how many old runs were deleted."""
    import json

    with conn.transaction():
        conn.execute(
            f"INSERT INTO {RUNS} (run_id, environment, suite, selection, started_at, duration_ms, exit_code, counts) "
            "VALUES (%s, %s, %s, %s, to_timestamp(%s), %s, %s, %s::jsonb)",
            (run_id, environment, suite, selection, started, round(duration * 1000), exit_code, json.dumps(counts)))
        seen: set[str] = set()
        rows = []
        for r in results:
            if r.check in seen:  # the same id twice (a check collected under two paths): keep the first
                continue
            seen.add(r.check)
            rows.append((run_id, r.check, r.outcome, r.risk or None, r.area or None, round(r.duration * 1000),
                         r.digest or None, r.message or None, r.hint or None))
        conn.copy(f"COPY {RESULTS} (run_id, check_id, outcome, risk, area, duration_ms, message_digest, message, "
                  "hint) FROM STDIN", rows)
        old = conn.execute(f"DELETE FROM {RUNS} WHERE started_at < now() - make_interval(days => %s)",
                           (retention_days,)).rowcount
        old += conn.execute(
            f"DELETE FROM {RUNS} WHERE environment = %s AND suite = %s AND run_id NOT IN "
            f"(SELECT run_id FROM {RUNS} WHERE environment = %s AND suite = %s ORDER BY started_at DESC LIMIT %s)",
            (environment, suite, environment, suite, max_runs)).rowcount
    return int(old)


def last_success(conn: PostgisStore, environment: str, suite: str) -> tuple[dict[str, float], float | None]:
    """When each check last passed, and when a run last ended with exit 0 (epoch seconds)."""
    checks = {check: float(at) for check, at in conn.rows(
        f"SELECT r.check_id, extract(epoch FROM max(c.started_at + c.duration_ms * interval '1 ms')) "
        f"FROM {RESULTS} r JOIN {RUNS} c USING (run_id) WHERE c.environment = %s AND c.suite = %s "
        "AND r.outcome = 'passed' GROUP BY r.check_id", (environment, suite))}
    run = conn.scalar(f"SELECT extract(epoch FROM max(started_at + duration_ms * interval '1 ms')) FROM {RUNS} "
                      "WHERE environment = %s AND suite = %s AND exit_code = 0", (environment, suite))
    return checks, float(run) if run is not None else None


def latest_suite(conn: PostgisStore, environment: str) -> str | None:
    """The suite of the newest run in ``environment``."""
    row = conn.execute(f"SELECT suite FROM {RUNS} WHERE environment = %s ORDER BY started_at DESC LIMIT 1",
                       (environment,)).fetchone()
    return str(row[0]) if row else None


def _runs(conn: PostgisStore, where: str, params: tuple[Any, ...], limit: int) -> list[Run]:
    rows = conn.rows(f"SELECT run_id::text, environment, suite, selection, started_at, duration_ms, exit_code, counts "
                     f"FROM {RUNS} WHERE {where} ORDER BY started_at DESC LIMIT %s", (*params, limit))
    return [Run(r[0], r[1], r[2], r[3], r[4].astimezone(dt.UTC), r[5] / 1000, r[6], dict(r[7] or {}))
            for r in reversed(rows)]


def window(conn: PostgisStore, environment: str, suite: str, *, since: dt.datetime | None,
           runs: int) -> tuple[Run | None, list[Run]]:
    """(the reference run, the runs of the window, oldest first — the last one is the latest run).

    Without ``since``: the last ``runs`` runs, the reference is the one before the latest.
    With ``since``: every run from then on (at most :data:`MAX_WINDOW`), and the reference is
    the last run before it — the state at that time.
    """
    base = "environment = %s AND suite = %s"
    if since is None:
        found = _runs(conn, base, (environment, suite), runs)
        reference = found[-2] if len(found) >= 2 else None
    else:
        found = _runs(conn, base + " AND started_at >= %s", (environment, suite, since), MAX_WINDOW)
        before = _runs(conn, base + " AND started_at < %s", (environment, suite, since), 1)
        reference = before[-1] if before else None
    wanted = [r for r in (*found, reference) if r is not None]
    by_id = {r.run_id: r for r in wanted}
    if by_id:
        for row in conn.rows(
                f"SELECT run_id::text, check_id, outcome, coalesce(risk, ''), coalesce(area, ''), duration_ms, "
                f"coalesce(message_digest, ''), coalesce(message, ''), coalesce(hint, '') FROM {RESULTS} "
                "WHERE run_id = ANY(%s::uuid[])", (list(by_id),)):
            by_id[row[0]].results[row[1]] = Stored(row[1], row[2], row[3], row[4], row[5] / 1000, row[6], row[7],
                                                   row[8])
    return reference, found


def ledger(conn: PostgisStore, since: dt.datetime, limit: int = 200) -> list[dict[str, Any]]:
    """The action ledger (``kfm_ops.audit_ledger``) from ``since`` on, newest first (times in UTC)."""
    rows = conn.dicts(
        "SELECT run_id::text, action, actor, environment, outcome, error, started_at, ended_at, duration_ms, counts "
        "FROM kfm_ops.audit_ledger WHERE started_at >= %s ORDER BY started_at DESC LIMIT %s", (since, limit))
    for row in rows:
        for key in ("started_at", "ended_at"):
            if row[key] is not None:
                row[key] = row[key].astimezone(dt.UTC).isoformat()
    return rows
