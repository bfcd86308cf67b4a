"""Safety gates for mutating actions: intent, environment, lock, audit ledger.

The order an action goes through them (see :mod:`maintenance.runner`):

1. :func:`check_intent` — production needs ``--environment production
   --confirm PRODUCTION``; the flags, the settings and the database's own
   environment marker must agree. Refusals change nothing.
2. :class:`StoreLocks` — a Postgres advisory lock per store the action touches,
   held on the control connection; a concurrent run is refused naming the holder.
   A killed run's locks go with its connection.
3. :class:`Ledger` — a ``kfm_ops.audit_ledger`` row at start, completed at the end
   whatever happens; runs left ``running`` by a killed process become ``aborted``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfm_ops import log
from kfm_ops.errors import ActionFailed, ActionRefused, Interrupted, KfmError, LockHeld
from kfm_ops.redact import redact, redact_obj
from kfm_ops.settings import SERVICES
from kfm_ops.stores.postgis import PostgisStore

CONFIRM_WORD = "PRODUCTION"
_LOCK_CLASS = 0x4B464D  # "KFM": first key of every kfm-maint advisory lock


@dataclass(frozen=True)
class Intent:
    """What the operator asked for on the command line."""

    action: str
    dry_run: bool = False
    environment: str | None = None
    confirm: str = ""


def check_intent(intent: Intent, *, settings_environment: str, database_marker: str | None,
                 stamping: bool = False) -> str:
    """Return the environment the action targets, or raise :class:`ActionRefused`.

    ``database_marker`` is the environment the canonical database is stamped with (None: not
    stamped). An unstamped database takes no write but the one that stamps it (``stamping``:
    ``kfm-maint migrate --environment X``), and that only with the environment given explicitly.
    """
    if intent.environment and intent.environment != settings_environment:
        raise ActionRefused(
            f"--environment {intent.environment} disagrees with the settings "
            f"(KFM_ENVIRONMENT={settings_environment})",
            hint="point the settings at the environment you mean, or fix --environment",
        )
    if database_marker is None and not (stamping and intent.environment):
        raise ActionRefused(
            f"{intent.action} refused: the target database carries no environment marker "
            "(a fresh restore or a new cluster is never assumed to be dev)",
            hint="stamp it explicitly first: kfm-maint migrate --environment <dev|staging|production> "
            f"(production also needs --confirm {CONFIRM_WORD})",
        )
    if database_marker and database_marker != settings_environment:
        raise ActionRefused(
            f"the target database says it is '{database_marker}' but the settings say '{settings_environment}'",
            hint="you may be pointing at the wrong database; check KFM_POSTGIS__WRITE_DSN",
        )
    target = database_marker or settings_environment
    if target == "production" and intent.dry_run and intent.environment == "production":
        return target  # planning against production writes nothing: the explicit flag is enough
    if target == "production" and not (intent.environment == "production" and intent.confirm == CONFIRM_WORD):
        raise ActionRefused(
            f"{intent.action} targets production",
            hint=f"re-run with --environment production --confirm {CONFIRM_WORD} "
            "(after reading the plan with --dry-run)",
        )
    if intent.confirm and intent.confirm != CONFIRM_WORD:
        raise ActionRefused(f"--confirm {intent.confirm!r} is not the confirmation word",
                            hint=f"the word is {CONFIRM_WORD}, and only for --environment production")
    return target


def services_of(stores: tuple[str, ...] | list[str]) -> list[str]:
    """The services an action connects to: PostgreSQL (control connection, ledger, locks), then those of the
    stores it locks or checks (lock names that are not services — canonical, auth — live in PostgreSQL)."""
    return ["postgis", *sorted({s for s in stores if s in SERVICES and s != "postgis"})]


def application_name(run_id: str, action: str) -> str:
    """The control connection's application_name: how a refused run learns the holder."""
    return f"kfm-maint/{run_id}/{action}"[:63]


class StoreLocks:
    """Session-level advisory locks, one per store, on the control connection."""

    def __init__(self, conn: PostgisStore, action: str) -> None:
        self.conn = conn
        self.action = action
        self.held: list[str] = []

    def acquire(self, stores: list[str]) -> None:
        for store in sorted(stores):  # a fixed order: two actions never deadlock
            if not self.conn.scalar("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_CLASS, store)):
                holder = self.holder(store)
                self.release()
                raise LockHeld(f"{self.action} (store {store})", holder)
            self.held.append(store)

    def holder(self, store: str) -> str:
        row = self.conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid "
            "AND l.objid = hashtext(%s)::oid AND l.objsubid = 2",
            (_LOCK_CLASS, store),
        ).fetchone()
        name = row[0] if row else ""
        parts = name.split("/")
        return f"{parts[1]} ({parts[2]})" if len(parts) >= 3 and parts[0] == "kfm-maint" else name or "unknown"

    def verify(self) -> None:
        """Fail at once (exit 5) when a lock is no longer held: the control connection was dropped (an idle
        timeout, a failover, a pooler) or the lock released — another run may hold it now."""
        if not self.held:
            return
        try:
            held = self.conn.scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
                "AND classid = %s::oid AND objid = ANY(SELECT hashtext(s)::oid FROM unnest(%s::text[]) s) "
                "AND objsubid = 2", (_LOCK_CLASS, self.held))
        except Interrupted:
            raise  # a SIGTERM during the question is the answer: stop, the lock is not the problem
        except KfmError as exc:
            held, reason = -1, exc.message
        else:
            reason = f"{held} of {len(self.held)} locks still held"
        if held != len(self.held):
            raise ActionFailed(self.action, "lock", f"the advisory lock on {', '.join(self.held)} was lost ({reason})",
                               hint="another run may hold it now: the live state was left as documented for this "
                               "step; re-run once no other run is active")

    def release(self) -> None:
        for store in self.held:
            with contextlib.suppress(KfmError):  # a dropped connection released them already
                self.conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK_CLASS, store))
        self.held.clear()


class Ledger:
    """The ``kfm_ops.audit_ledger`` rows of one run.

    The end record matters most when things went wrong, so it is retried on a fresh
    connection (``reconnect``) when the control connection is gone.
    """

    END_ATTEMPTS = 3

    def __init__(self, conn: PostgisStore, *, run_id: str, action: str, actor: str, environment: str,
                 reconnect: Callable[[], PostgisStore] | None = None) -> None:
        self.conn = conn
        self.reconnect = reconnect
        self.run_id = run_id
        self.action = action
        self.actor = actor
        self.environment = environment
        self._started = time.monotonic()

    def mark_abandoned(self) -> int:
        """Close rows left ``running`` by runs whose control connection is gone."""
        cur = self.conn.execute(
            "UPDATE kfm_ops.audit_ledger l SET outcome = 'aborted', ended_at = now(), "
            "error = 'the run ended without an end record (killed?)', "
            "duration_ms = (extract(epoch FROM now() - started_at) * 1000)::bigint "
            "WHERE outcome = 'running' AND NOT EXISTS ("
            "  SELECT 1 FROM pg_stat_activity a WHERE a.application_name LIKE 'kfm-maint/' || l.run_id || '/%')"
        )
        return cur.rowcount

    def start(self, plan: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO kfm_ops.audit_ledger (run_id, action, actor, environment, plan, outcome) "
            "VALUES (%s, %s, %s, %s, %s, 'running')",
            (self.run_id, self.action, self.actor, self.environment, json.dumps(redact_obj(plan), default=str)),
        )

    def end(self, outcome: str, counts: dict[str, Any], error: str | None = None) -> str | None:
        """Complete the run's row; on a dropped connection try again on fresh ones. Returns why it could not."""
        values = (outcome, json.dumps(redact_obj(counts), default=str), redact(error) if error else None,
                  int((time.monotonic() - self._started) * 1000), self.run_id)
        failure = ""
        for attempt in range(self.END_ATTEMPTS):
            try:
                if attempt:
                    time.sleep(0.5 * attempt)
                    if self.reconnect is None:
                        break
                    self.conn = self.reconnect()
                self.conn.execute("UPDATE kfm_ops.audit_ledger SET outcome = %s, counts = %s, error = %s, "
                                  "ended_at = now(), duration_ms = %s WHERE run_id = %s", values)
                return None
            except KfmError as exc:
                failure = exc.message
                log.get_logger().warning("ledger.end_retry", attempt=attempt + 1, reason=failure)
        return failure
