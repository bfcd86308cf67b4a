"""A reindex killed mid-bulk or mid-verify leaves the live alias serving the old, complete index.

Toxiproxy slows the search connection of the reindex process so the kill lands
in the step we aim at; the stack itself is watched directly (not through the proxy).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import toxiproxy
from tests.helpers import ROOT, kfm_maint, run_check

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog", "_no_stray_index")]


@pytest.fixture
def _no_stray_index(search_writer: Any) -> Iterator[None]:
    """After a killed run, a bulk request it had sent through the slow proxy may reach OpenSearch after the next
    run discarded the half-built index. It goes through that index's writing alias (``require_alias``), so it
    must fail there, not auto-create the index anew (one replica, no kfm _meta: a yellow single-node cluster).
    A stray found fails the test, and is removed so that later tests do not meet it."""
    yield
    time.sleep(1.0)  # what the proxy still held has arrived
    strays = [name for name, body in search_writer.indices.get(index="kfm-items-v*").items()
              if not body["mappings"].get("_meta", {}).get("kfm")]
    for name in strays:
        search_writer.indices.delete(index=name, ignore_unavailable=True)
    assert not strays, f"a late bulk request created {strays}"


ALIAS = "kfm-items"


def _start_reindex(search_url: str) -> subprocess.Popen[str]:
    # small bulk requests: each fits the request deadline on a throttled link, and there are many
    return subprocess.Popen([sys.executable, "-m", "maintenance.cli", "reindex", "--targets", "search", "--force",
                             "--batch-size", "50", "--no-verify"], cwd=ROOT,
                            env={**os.environ, "KFM_SEARCH__URL": search_url},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


_BEFORE: set[str] = set()  # indices that existed before the run under test started


def _building(search: Any, live: str) -> list[str]:
    found = search.indices.get(index="kfm-items-v*")
    return [n for n, body in found.items() if n != live and n not in _BEFORE
            and body["mappings"].get("_meta", {}).get("kfm", {}).get("state") == "building"]


def _remember_indices(search: Any) -> None:
    _BEFORE.clear()
    _BEFORE.update(search.indices.get(index="kfm-items-v*"))


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the reindex ended before the kill point: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the kill point was never reached")


def _settled(read: Callable[[], int]) -> int:
    """A count that stayed the same for half a second: a commit the killed run had already sent lands first."""
    value = read()
    for _ in range(20):
        time.sleep(0.5)
        again = read()
        if again == value:
            return value
        value = again
    raise AssertionError(f"the count never settled (last {value})")


def _assert_old_index_still_live(search: Any, live: str, count: int) -> None:
    assert sorted(search.indices.get_alias(name=ALIAS)) == [live]
    search.indices.refresh(index=live)
    assert search.count(index=ALIAS)["count"] == count
    assert run_check("opschecks/consistency/test_cross_store.py::test_search_matches_canonical").outcome == "passed"


def _in_bulk(search: Any, live: str) -> Callable[[], bool]:
    def reached() -> bool:
        building = _building(search, live)
        if not building:
            return False
        stats = search.indices.stats(index=building[0], metric="indexing")["indices"][building[0]]
        return bool(stats["primaries"]["indexing"]["index_total"] > 0)
    return reached


def _in_verify(search: Any, live: str) -> Callable[[], bool]:
    def reached() -> bool:
        building = _building(search, live)
        if not building:
            return False
        interval = search.indices.get_settings(index=building[0])[building[0]]["settings"]["index"]
        return interval.get("refresh_interval") not in (None, "-1")
    return reached


@pytest.mark.parametrize("point", ["bulk", "verify"])
def test_reindex_killed_leaves_alias_on_the_complete_old_index(point: str, search_writer: Any,
                                                              owner_pg: Any) -> None:
    live = sorted(search_writer.indices.get_alias(name=ALIAS))[0]
    count = search_writer.count(index=ALIAS)["count"]
    with toxiproxy.proxy("search-kill", toxiproxy.upstream("search")) as p:
        if point == "bulk":
            p.toxic("bandwidth", "upstream", rate=40)  # KB/s: the bulk body crawls
        else:
            p.toxic("latency", "downstream", latency=700)  # each request of the verify step waits
        _remember_indices(search_writer)
        proc = _start_reindex(f"http://127.0.0.1:{p.port}")
        _wait_for((_in_bulk if point == "bulk" else _in_verify)(search_writer, live), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    _assert_old_index_still_live(search_writer, live, count)
    dangling = owner_pg.execute("SELECT count(*) FROM kfm_ops.audit_ledger WHERE outcome = 'running' "
                                "AND action = 'reindex-search'").fetchone()[0]
    assert dangling == 1, "the killed run's ledger row stays open until the next run closes it"

    rerun = kfm_maint("reindex", "--targets", "search", "--force", "--json")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert owner_pg.execute("SELECT count(*) FROM kfm_ops.audit_ledger WHERE outcome = 'running'").fetchone()[0] == 0
    assert owner_pg.execute("SELECT count(*) FROM kfm_ops.audit_ledger WHERE outcome = 'aborted' "
                            "AND action = 'reindex-search'").fetchone()[0] >= 1
    _BEFORE.clear()
    assert not _building(search_writer, "none"), "the half-built index of the killed run was pruned"
    _assert_old_index_still_live(search_writer, sorted(search_writer.indices.get_alias(name=ALIAS))[0], count)


def test_sigterm_stops_at_a_safe_point(search_writer: Any, owner_pg: Any) -> None:
    live = sorted(search_writer.indices.get_alias(name=ALIAS))[0]
    count = search_writer.count(index=ALIAS)["count"]
    with toxiproxy.proxy("search-term", toxiproxy.upstream("search")) as p:
        p.toxic("bandwidth", "upstream", rate=40)
        _remember_indices(search_writer)
        proc = _start_reindex(f"http://127.0.0.1:{p.port}")
        _wait_for(_in_bulk(search_writer, live), proc)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    assert "SIGTERM" in err and "Traceback" not in err
    _assert_old_index_still_live(search_writer, live, count)
    row = owner_pg.execute("SELECT outcome FROM kfm_ops.audit_ledger WHERE action = 'reindex-search' "
                           "ORDER BY started_at DESC LIMIT 1").fetchone()
    assert row[0] == "aborted"
    _BEFORE.clear()
    assert not _building(search_writer, live), "SIGTERM discarded the half-built index"


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "maintenance.cli", *args, "--no-verify"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ledger_open(owner_pg: Any, action: str) -> int:
    return int(owner_pg.execute("SELECT count(*) FROM kfm_ops.audit_ledger WHERE outcome = 'running' "
                                "AND action = %s", (action,)).fetchone()[0])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_graph_sync_interrupted_mid_upsert_reports_exact_staleness_then_converges(
        sig: signal.Signals, graph_writer: Any, owner_pg: Any) -> None:
    # stale as an old sync leaves a node: its content hash and its fingerprint both not the canonical item's
    graph_writer.run("MATCH (i:Item) SET i.content_hash = 'stale', i.sync_h1 = 0")
    stale = lambda: graph_writer.run("MATCH (i:Item {content_hash: 'stale'}) RETURN count(*) AS n")[0]["n"]  # noqa: E731
    total = stale()
    with toxiproxy.proxy("graph-kill", toxiproxy.upstream("graph")) as p:
        p.toxic("latency", "downstream", latency=400)
        proc = _start(["reindex", "--targets", "graph", "--batch-size", "100"],
                      toxiproxy.through("graph", p.port))
        _wait_for(lambda: 0 < stale() < total, proc, timeout=180)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=120)
    left = _settled(stale)
    result = run_check("opschecks/consistency/test_cross_store.py::test_graph_matches_canonical")
    if left:
        assert result.outcome == "failed" and f"{left} stale" in result.message, (left, result.message)
    if sig == signal.SIGKILL:
        assert _ledger_open(owner_pg, "sync-graph") == 1
    else:
        assert proc.returncode == 5 and "SIGTERM" in err and "Traceback" not in err
        assert _ledger_open(owner_pg, "sync-graph") == 0
    rerun = kfm_maint("reindex", "--targets", "graph")  # with verification: converges
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _ledger_open(owner_pg, "sync-graph") == 0
    assert stale() == 0


def test_cache_rebuild_killed_mid_summaries_leaves_whole_summaries(cache_writer: Any, owner_pg: Any) -> None:
    keys = sorted(cache_writer.scan_iter(match="kfm:summary:dataset:*"))
    for key in keys:
        cache_writer.hset(key, "content_hash", "stale")
    rewritten = lambda: sum(cache_writer.hget(k, "content_hash") != "stale" for k in keys)  # noqa: E731
    with toxiproxy.proxy("cache-kill", toxiproxy.upstream("cache")) as p:
        p.toxic("latency", "downstream", latency=150)
        proc = _start(["cache", "rebuild"], toxiproxy.through("cache", p.port))
        _wait_for(lambda: 0 < rewritten() < len(keys), proc, timeout=120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # every summary is whole (old or new): the contract and count checks pass mid-way
    for check in ("opschecks/contract/test_cache_contract.py::test_cache_summary_keys",
                  "opschecks/consistency/test_cross_store.py::test_cache_counts_match_canonical"):
        assert run_check(check).outcome == "passed", check
    assert _ledger_open(owner_pg, "cache-rebuild") == 1
    rerun = kfm_maint("cache", "rebuild")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _ledger_open(owner_pg, "cache-rebuild") == 0
    assert rewritten() == len(keys)
