"""Partitioned runs: one coordinator holds a canonical snapshot open, workers do bucket ranges inside it.

``kfm-maint reindex|sync … --partitions N`` is the coordinator. It is a run like any other (its store
lock, its audit-ledger row); inside its apply it opens a REPEATABLE READ snapshot (on the replica when
one is configured), exports it, writes one ``kfm_ops.run_partitions`` row per partition naming that
snapshot and what to write, and waits — holding the snapshot, touching its session so it is never
idle — until every partition has succeeded. ``--partition i/N`` is a worker (a run of its own, with
its own ledger row and a lock on its partition): it takes the row of the coordinator that waits for
``i/N``, joins the snapshot (``SET TRANSACTION SNAPSHOT``, as ``pg_dump -j`` does), does the buckets of
:class:`kfm_ops.partition.Partition` ``i/N`` and records its outcome and counts. A failed partition is
run again alone, on the same snapshot, while the coordinator waits; one already done is not redone.
The coordinator completes the run once all have succeeded, or fails naming those that did not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfm_ops.errors import ActionFailed
from kfm_ops.partition import Partition
from kfm_ops.redact import redact, redact_obj
from kfm_ops.stores.postgis import PostgisStore

POLL_SECONDS = 0.5
ALIVE = ("SELECT l.outcome = 'running' AND EXISTS (SELECT 1 FROM pg_stat_activity a "
         "WHERE a.application_name LIKE 'kfm-maint/' || l.run_id || '/%%') FROM kfm_ops.audit_ledger l "
         "WHERE l.run_id = %s")


@dataclass(frozen=True)
class Claim:
    """A worker's partition: the coordinator's run, the snapshot to join, what to write."""

    run_id: str
    snapshot: str
    target: dict[str, Any]
    attempt: int


class Coordinator:
    """The ``kfm_ops.run_partitions`` rows of one coordinated run (``control``: the run's write connection)."""

    def __init__(self, control: PostgisStore, action: str, run_id: str, parts: int) -> None:
        self.control = control
        self.action = action
        self.run_id = run_id
        self.parts = parts

    def open(self, snapshot: str, target: dict[str, Any]) -> None:
        """One pending row per partition, naming the exported snapshot and the target."""
        self.control.execute(
            "INSERT INTO kfm_ops.run_partitions (run_id, part, parts, snapshot, target) "
            "SELECT %s, g, %s, %s, %s FROM generate_series(0, %s - 1) g",
            (self.run_id, self.parts, snapshot, json.dumps(target), self.parts))

    def rows(self) -> list[dict[str, Any]]:
        return self.control.dicts("SELECT part, outcome, attempts, counts, error FROM kfm_ops.run_partitions "
                                  "WHERE run_id = %s ORDER BY part", (self.run_id,))

    def wait(self, timeout: float, *, checkpoint: Callable[[], None], keepalive: Callable[[], None],
             progress: Callable[[int], None] = lambda _done: None) -> list[dict[str, Any]]:
        """Every partition's row once all have succeeded; at ``timeout``, fail naming the ones that did not."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows()
            done = [r for r in rows if r["outcome"] == "succeeded"]
            progress(len(done))
            if len(done) == self.parts:
                return rows
            if time.monotonic() >= deadline:
                left = [f"{r['part']}/{self.parts} {r['outcome']}" + (f" ({r['error']})" if r["error"] else "")
                        for r in rows if r["outcome"] != "succeeded"]
                raise ActionFailed(self.action, "partitions",
                                   f"{len(left)} of {self.parts} partitions not done after {timeout:g}s: "
                                   + "; ".join(left)[:1500],
                                   hint="run the missing workers (kfm-maint … --partition i/N) within the wait "
                                   "(--partition-wait); nothing was swapped or recorded as synced")
            checkpoint()  # our lock: the run stops at once if it is gone
            keepalive()  # a statement in the snapshot's transaction: its session is never idle in it
            time.sleep(POLL_SECONDS)


def claim(control: PostgisStore, action: str, partition: Partition, worker: str, *, wait: float,
          checkpoint: Callable[[], None]) -> Claim | None:
    """Take ``partition`` of the newest live ``action`` run that coordinates ``partition.count`` partitions,
    waiting up to ``wait`` seconds for one to appear. None: that partition has already succeeded."""
    deadline = time.monotonic() + wait
    while True:
        row = control.one(
            "SELECT (SELECT to_jsonb(p) FROM kfm_ops.run_partitions p JOIN kfm_ops.audit_ledger l USING (run_id) "
            "WHERE l.action = %s AND l.outcome = 'running' AND p.part = %s AND p.parts = %s "
            "AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name LIKE "
            "'kfm-maint/' || l.run_id || '/%%') ORDER BY l.started_at DESC LIMIT 1)",
            (action, partition.index, partition.count))[0]
        if row is not None:
            if row["outcome"] == "succeeded":
                return None
            taken = control.one(
                "UPDATE kfm_ops.run_partitions SET outcome = 'running', worker = %s, attempts = attempts + 1, "
                "started_at = now(), ended_at = NULL, error = NULL WHERE run_id = %s AND part = %s "
                "RETURNING attempts", (worker, row["run_id"], partition.index))
            return Claim(str(row["run_id"]), row["snapshot"], row["target"], int(taken[0]))
        if time.monotonic() >= deadline:
            raise ActionFailed(action, "partition", f"no {action} run is waiting for partition {partition.label} "
                               f"(waited {wait:g}s)",
                               hint=f"start the coordinator first: kfm-maint … --partitions {partition.count}; "
                               "or raise --partition-wait")
        checkpoint()
        time.sleep(POLL_SECONDS)


def coordinator_alive(control: PostgisStore, run_id: str) -> bool:
    """Whether the coordinating run still runs (its row says so and its session is connected)."""
    return bool(control.scalar(ALIVE, (run_id,)))


def finish(control: PostgisStore, claimed: Claim, partition: Partition, outcome: str,
           counts: dict[str, Any], error: str | None = None) -> None:
    """Record how the partition ended (counts redacted as the ledger's are)."""
    control.execute("UPDATE kfm_ops.run_partitions SET outcome = %s, counts = %s, error = %s, ended_at = now() "
                    "WHERE run_id = %s AND part = %s",
                    (outcome, json.dumps(redact_obj(counts), default=str), redact(error) if error else None,
                     claimed.run_id, partition.index))
