"""Reading the canonical store from a streaming replica (``KFM_POSTGIS__REPLICA_DSN``).

Heavy reads — the consistency streams and digests, the rebuild and sync streams — may go to a
replica; the control connection (locks, ledger, watermarks) and the small dating lookups stay on
the primary. Two rules keep a replica's answers honest (docs/scale.md, "Reading from a replica"):

- **What a snapshot there stands for.** The primary's clock and WAL insert position are read first;
  once the replica has replayed up to that position (waited for at most
  ``KFM_POSTGIS__REPLICA_MAX_WAIT``), a snapshot taken on it stands for that instant, as a snapshot
  on the primary would. A replica that does not catch up in time stands for its last replayed
  commit, read *before* the snapshot opens: a watermark never claims more than the replica had.
- **Recovery conflicts.** Replay may cancel a long read on a standby (``canceling statement due to
  conflict with recovery``: the primary vacuumed rows the read still needs); the run then fails with
  the fault ``conflict with recovery`` and changes nothing it had not proven. ``hot_standby_feedback
  = on`` on the replica prevents it (at the cost of the primary keeping those rows a little longer),
  as a long ``max_standby_streaming_delay`` does (at the cost of replication lag).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from kfm_ops import log
from kfm_ops.errors import ServiceError
from kfm_ops.faults import REPLICA_BEHIND

if TYPE_CHECKING:
    from kfm_ops.stores.postgis import PostgisStore

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Dated:
    """What a snapshot taken next on the replica stands for, and how far behind the primary the replica was."""

    instant: datetime | None  # None: unknown (behind, and no commit replayed since it started)
    caught_up: bool  # it had replayed everything the primary had committed when asked
    behind: float | None = None  # when not caught up: seconds of commits it lacked (None: unknown)
    position: str = ""  # the primary's WAL insert position it was asked to reach

    def describe(self, wait: float) -> str:
        lacking = f"{self.behind:.1f}s of commits behind" if self.behind is not None else "behind"
        return f"{lacking} the primary (it had not replayed up to {self.position} after waiting {wait:g}s)"


def dated(primary: PostgisStore, replica: PostgisStore) -> Dated:
    """Date the next snapshot of ``replica`` against ``primary`` (waiting for it to catch up, bounded)."""
    primary_now, position = primary.one("SELECT now(), pg_current_wal_insert_lsn()::text")
    in_recovery, own_now = replica.one("SELECT pg_is_in_recovery(), now()")
    if not in_recovery:  # not (or no longer) a standby: it dates itself, as the primary would
        return Dated(own_now, True)
    deadline = time.monotonic() + replica.section.replica_max_wait
    while True:
        replayed, replayed_at = replica.one("SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false), "
                                            "pg_last_xact_replay_timestamp()", (position,))
        if replayed:
            return Dated(primary_now, True)
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    if replayed_at is None:  # nothing replayed since it started: there is no commit to date it by
        return Dated(None, False, None, position)
    behind = max((primary_now - replayed_at).total_seconds(), 0.0)
    log.get_logger().warning("replica.behind", replica=replica.address, behind_s=round(behind, 3),
                             watermark=replayed_at.isoformat())
    return Dated(min(replayed_at, primary_now), False, behind, position)


def instant(primary: PostgisStore, replica: PostgisStore) -> datetime:
    """The instant of the next snapshot on ``replica`` (:func:`dated`); a replica that cannot be dated is a fault."""
    found = dated(primary, replica)
    if found.instant is None:
        raise ServiceError("postgis", replica.address, REPLICA_BEHIND,
                           found.describe(replica.section.replica_max_wait) + " and has replayed no commit since "
                           "it started")
    return found.instant
