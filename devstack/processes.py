"""Processes: /proc, pid files, a service's process tree, starting it logged and stopping it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.errors import StackError


def proc_stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(state, ppid, pgrp, session, starttime) of a live process, or None."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19])


def proc_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536 * max(1, n // 100 + 1)))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.splitlines()[-n:]


def stamp_line(what: str) -> bytes:
    """The line devstack writes into a service log before it acts (one format for all)."""
    return f"\n=== devstack {time.strftime('%Y-%m-%d %H:%M:%S')}: {what}\n".encode()


# --------------------------------------------------------------------------- pid files
def read_pidfile(path: Path) -> tuple[int, int] | None:
    """(pid, start time) recorded in a pid file, or None."""
    try:
        pid_s, start_s = path.read_text().split()[:2]
        return int(pid_s), int(start_s)
    except (OSError, ValueError):
        return None


def write_pidfile(path: Path, pid: int) -> None:
    stat = proc_stat(pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {stat[4] if stat else 0}\n")


def process_tree(recorded: tuple[int, int] | None) -> list[int]:
    """Every live process of a recorded leader: the leader, its session, its descendants."""
    if recorded is None:
        return []
    lead, start = recorded
    stats = {}
    for pid in all_pids():
        s = proc_stat(pid)
        if s is not None and s[0] != "Z":
            stats[pid] = s
    ours: set[int] = set()
    if lead in stats and stats[lead][4] == start:
        ours.add(lead)
    for pid, s in stats.items():
        if s[3] == lead and s[4] >= start:  # same session as the leader
            ours.add(pid)
    changed = True
    while changed:  # descendants (postgres backends start their own sessions)
        changed = False
        for pid, s in stats.items():
            if pid not in ours and s[1] in ours:
                ours.add(pid)
                changed = True
    return sorted(ours)


# --------------------------------------------------------------------------- start and stop
def launch(name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path, *, shown: str,
           as_postgres: bool = False) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, output appended to ``log``; ``shown`` is the logged command."""
    log.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if as_postgres:
        kwargs.update(user="postgres", group="postgres", extra_groups=[])
    with log.open("ab") as logf:
        logf.write(stamp_line(f"starting {name}: {shown}"))
        logf.flush()
        try:
            return subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=cwd, env=env, start_new_session=True, **kwargs)
        except OSError as e:
            raise StackError(f"{name}: could not execute {argv[0]}: {e}. Log file: {log}") from None


def terminate(name: str, procs: Callable[[], list[int]], lead: int, *, stop_signal: signal.Signals,
              stop_timeout: float, reap: Callable[[], None], log: Path) -> bool:
    """Signal a service's processes, wait up to ``stop_timeout``, then KILL; True if it had to KILL."""
    pids = procs()
    if lead in pids:
        with contextlib.suppress(ProcessLookupError):
            if stop_signal == signal.SIGTERM:
                os.killpg(lead, signal.SIGTERM)
            else:
                os.kill(lead, stop_signal)
    else:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    killed = False
    deadline = time.monotonic() + stop_timeout
    while True:
        reap()
        left = procs()
        if not left:
            return killed
        if time.monotonic() > deadline:
            if killed:
                raise StackError(f"{name}: processes {left} survived SIGKILL. Log file: {log}")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(lead, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + 10
        time.sleep(0.2)
