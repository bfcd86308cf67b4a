"""Concurrent mutating runs: one proceeds per store, the other is refused naming the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests import toxiproxy
from tests.helpers import ROOT, kfm_maint

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]


def _slow(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "maintenance.cli", *args, "--no-verify"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lock(owner_pg: Any, action: str, proc: subprocess.Popen[str]) -> str:
    for _ in range(400):
        row = owner_pg.execute("SELECT application_name FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                               "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s",
                               (f"kfm-maint/%/{action}",)).fetchone()
        if row:
            return str(row[0]).split("/")[1]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{action} never took its lock")


@pytest.mark.parametrize(("first", "second", "refused"), [
    (["cache", "rebuild"], ["cache", "rebuild"], True),
    (["reindex", "--targets", "graph"], ["reindex", "--targets", "search,graph"], True),
    (["reindex", "--targets", "graph"], ["reindex", "--targets", "search"], False),
], ids=["same action", "different actions, same store", "different stores"])
def test_second_run_is_refused_or_proceeds(first: list[str], second: list[str], refused: bool, owner_pg: Any,
                                           cache_writer: Any, graph_writer: Any) -> None:
    upstream = "127.0.0.1:6379" if first[0] == "cache" else "127.0.0.1:7687"
    with toxiproxy.proxy("concurrency", upstream) as proxy:
        proxy.toxic("latency", "downstream", latency=150)  # keeps the first run inside its lock for a while
        if first[0] == "cache":
            env = {"KFM_CACHE__URL": f"redis://127.0.0.1:{proxy.port}/0"}
            for key in cache_writer.scan_iter(match="kfm:summary:dataset:*"):
                cache_writer.hset(key, "content_hash", "stale")
        else:
            env = {"KFM_GRAPH__URL": f"bolt://127.0.0.1:{proxy.port}"}
            graph_writer.run("MATCH (i:Item) WITH i LIMIT 300 SET i.content_hash = 'stale'")
        holder = _slow(first, env)
        action = "cache-rebuild" if first[0] == "cache" else "sync-graph"
        run_id = _wait_for_lock(owner_pg, action, holder)
        other = kfm_maint(*second, "--no-verify")
        out, err = holder.communicate(timeout=300)
    assert holder.returncode == 0, out + err
    if refused:
        assert other.returncode == 3, other.stdout + other.stderr
        assert run_id in other.stderr and "already running" in other.stderr
    else:
        assert other.returncode == 0, other.stdout + other.stderr
