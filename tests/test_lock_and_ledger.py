"""A run that loses its lock stops at once; a run whose control connection drops at the end still records itself.

Both faults are made, not timed: the run is held at a known point by a lock the test
owns (a PostgreSQL table or row lock), the fault is injected while it waits there, then
the test lets it go on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests import toxiproxy
from tests.helpers import ROOT
from tests.plugins.faults import pg_connect

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "maintenance.cli", *args, "--no-verify", "--json"], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _until(condition: Any, proc: subprocess.Popen[str], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def _control(owner_pg: Any, action: str) -> tuple[int, str] | None:
    """(pid, run_id) of the control connection of a running ``action`` that holds its store lock."""
    row = owner_pg.execute(
        "SELECT a.pid, a.application_name FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s", (f"kfm-maint/%/{action}",)
    ).fetchone()
    return (int(row[0]), str(row[1]).split("/")[1]) if row else None


def _waiting(owner_pg: Any, pid: int, statement: str) -> bool:
    """Whether backend ``pid`` waits on a lock in a statement that starts with ``statement``."""
    return bool(owner_pg.scalar("SELECT wait_event_type = 'Lock' AND query LIKE %s FROM pg_stat_activity "
                                "WHERE pid = %s", (f"{statement}%", pid)))


def test_losing_the_lock_mid_run_stops_the_run(owner_pg: Any, search_writer: Any, kfm_settings: Any) -> None:
    """The control connection is dropped while the reindex is held at its catch-up read: it must not go on."""
    live = sorted(search_writer.indices.get_alias(name="kfm-items"))
    blocker = pg_connect(kfm_settings, "kfm-ops-tests-lock-loss", autocommit=False)
    try:
        # the run's catch-up and verify read kfm.items through the read DSN: an ACCESS EXCLUSIVE lock on a
        # table they need holds the run right after its bulk load, while it owns its store lock
        proc = _start("reindex", "--targets", "search", "--force", "--batch-size", "200")
        pid, run_id = _until(lambda: _control(owner_pg, "reindex-search"), proc, "the run took its lock")
        _until(lambda: owner_pg.rows("SELECT outcome FROM kfm_ops.audit_ledger WHERE run_id = %s", (run_id,)),
               proc, "the ledger row was written")
        blocker.execute("LOCK TABLE kfm.items IN ACCESS EXCLUSIVE MODE")
        owner_pg.execute("SELECT pg_terminate_backend(%s)", (pid,))  # an idle timeout, a failover, a pooler
        blocker.rollback()
        out, err = proc.communicate(timeout=300)
    finally:
        blocker.close()
    assert proc.returncode == 5, out + err
    assert "advisory lock on search was lost" in err, err
    assert sorted(search_writer.indices.get_alias(name="kfm-items")) == live, "the alias moved without the lock"
    row = owner_pg.one("SELECT outcome, error FROM kfm_ops.audit_ledger WHERE run_id = %s", (run_id,))
    assert row[0] == "failed" and "lock" in row[1], row  # recorded through a fresh connection


def test_a_reset_control_connection_at_the_end_does_not_lose_the_record(owner_pg: Any, kfm_settings: Any) -> None:
    """The connection that writes the ledger's end record is reset while that write waits: a fresh one writes it."""
    with toxiproxy.proxy("ledger-end", toxiproxy.upstream("postgis")) as proxy:
        dsn = toxiproxy.through("postgis", proxy.port)["KFM_POSTGIS__WRITE_DSN"]
        table = pg_connect(kfm_settings, "kfm-ops-tests-ledger-table", autocommit=False)
        row = pg_connect(kfm_settings, "kfm-ops-tests-ledger-row", autocommit=False)
        try:
            # holds the run right after its REFRESH, where it records the cache's watermark
            table.execute("SELECT 1 FROM kfm_ops.sync_watermarks WHERE store = 'cache' FOR UPDATE")
            proc = _start("cache", "rebuild", env={"KFM_POSTGIS__WRITE_DSN": dsn})
            pid, run_id = _until(lambda: _control(owner_pg, "cache-rebuild"), proc, "the run took its lock")
            _until(lambda: _waiting(owner_pg, pid, "INSERT INTO kfm_ops.sync_watermarks"), proc,
                   "the run waits to record its watermark")
            row.execute("SELECT 1 FROM kfm_ops.audit_ledger WHERE run_id = %s FOR UPDATE", (run_id,))
            table.rollback()  # the run goes on, and waits again at its ledger end record
            _until(lambda: _waiting(owner_pg, pid, "UPDATE kfm_ops.audit_ledger"), proc,
                   "the run waits at its end record")
            # reset_peer resets a link when data next flows through it, and a statement waiting on a lock
            # gets nothing from the server until it answers: cancelling the wait makes it answer now
            # (otherwise only the run's lock_timeout would, a race with this wait's own timeout).
            # The toxic swallows that answer and resets the connection in its place.
            proxy.toxic("reset_peer", "downstream", timeout=0)
            owner_pg.execute("SELECT pg_cancel_backend(%s)", (pid,))
            _until(lambda: "ledger.end_retry" in _stderr_so_far(proc), proc, "the run saw the reset", timeout=30)
            retry = next(line for line in _stderr_so_far(proc).splitlines() if "ledger.end_retry" in line)
            assert "connection failed" in retry and "cancel" not in retry.lower(), f"not the reset: {retry}"
            proxy.clear()
            row.rollback()
            out, err = proc.communicate(timeout=120)
        finally:
            table.close()
            row.close()
    assert proc.returncode == 0, out + err  # the action itself succeeded
    assert json.loads(out.strip().splitlines()[-1])["ok"] is True
    outcome = owner_pg.scalar("SELECT outcome FROM kfm_ops.audit_ledger WHERE run_id = %s", (run_id,))
    assert outcome == "succeeded"


_seen: dict[int, str] = {}


def _stderr_so_far(proc: subprocess.Popen[str]) -> str:
    """What the run wrote to stderr so far (read without blocking)."""
    import fcntl

    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        chunk = os.read(fd, 65536).decode(errors="replace")
    except BlockingIOError:
        chunk = ""
    _seen[proc.pid] = _seen.get(proc.pid, "") + chunk
    return _seen[proc.pid]
