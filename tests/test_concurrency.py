"""Concurrent mutating runs: one proceeds per store, the other is refused naming the holder."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import ROOT, kfm_maint
from tests.plugins.faults import pg_connect

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "maintenance.cli", *args, "--no-verify"], cwd=ROOT,
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lock(owner_pg: Any, action: str, proc: subprocess.Popen[str]) -> str:
    """The run_id of the run of ``action`` once it holds its store lock."""
    for _ in range(600):
        row = owner_pg.execute("SELECT application_name FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                               "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s",
                               (f"kfm-maint/%/{action}",)).fetchone()
        if row:
            return str(row[0]).split("/")[1]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{action} never took its lock")


@contextlib.contextmanager
def ledger_held(kfm_settings: Any) -> Iterator[None]:
    """Hold the audit ledger in SHARE mode: a run that got its store lock waits at its first ledger
    write, inside that lock, until the block ends — the overlap is made, not timed."""
    conn = pg_connect(kfm_settings, "kfm-ops-tests-ledger", autocommit=False)
    try:
        conn.execute("LOCK TABLE kfm_ops.audit_ledger IN SHARE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()


def _action(args: list[str]) -> str:
    return {"cache": "cache-rebuild", "reindex": "sync-graph"}[args[0]]


@pytest.mark.parametrize(("first", "second"), [
    (["cache", "rebuild"], ["cache", "rebuild"]),
    (["reindex", "--targets", "graph"], ["reindex", "--targets", "search,graph"]),
], ids=["same action", "different actions, same store"])
def test_second_run_on_a_locked_store_is_refused(first: list[str], second: list[str], owner_pg: Any,
                                                 kfm_settings: Any) -> None:
    with ledger_held(kfm_settings):
        holder = _start(first)
        run_id = _wait_for_lock(owner_pg, _action(first), holder)
        other = kfm_maint(*second, "--no-verify")
        assert holder.poll() is None, "the first run ended before the second reached its lock"
    out, err = holder.communicate(timeout=300)
    assert holder.returncode == 0, out + err
    assert other.returncode == 3, other.stdout + other.stderr
    assert run_id in other.stderr and "already running" in other.stderr


def test_runs_on_different_stores_proceed_together(owner_pg: Any, kfm_settings: Any) -> None:
    with ledger_held(kfm_settings):
        holder = _start(["reindex", "--targets", "graph"])
        _wait_for_lock(owner_pg, "sync-graph", holder)
        other = _start(["reindex", "--targets", "search"])
        _wait_for_lock(owner_pg, "reindex-search", other)  # taken while the graph lock is held
        assert holder.poll() is None, "the graph run ended before the search run took its lock"
    for proc in (holder, other):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
