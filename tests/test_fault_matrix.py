"""The fault matrix: every service behind Toxiproxy, every fault, smoke checks and actions through it.

For each cell (service × fault) the smoke checks of that service, and the action
that depends most on it, run with the service reached through a Toxiproxy proxy.
Each run must end within its bound (no hang), exit with the documented code for
what happened (service unreachable ≠ check failed ≠ crash), name the service and
the fault class, print no traceback, and leave every store as it was. Faults the
retry policy covers (brief latency; one reset during warm-up) must succeed.

The observed cells are written to reports/fault-matrix.json; render the table in
docs/reliability.md with ``python -m tests.test_fault_matrix``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kfm_ops.hub import ServiceHub
from kfm_ops.settings import load_settings
from tests import fingerprint, toxiproxy
from tests.helpers import ROOT, kfm_maint

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

RESULTS = ROOT / "reports" / "fault-matrix.json"
BOUND_SECONDS = 60.0
CONNECT, QUERY = "2", "4"

# service → the action that needs it most (each reached where the settings say, through a proxy)
SERVICES: dict[str, list[str] | None] = {
    "postgis": ["cache", "rebuild"],
    "graph": ["reindex", "--targets", "graph"],
    "search": ["reindex", "--targets", "search"],
    "cache": ["cache", "rebuild"],
    "policy": ["reindex", "--targets", "graph"],
    "llm": None,
}

# fault → (how to inject it, the fault classes a failure may name, the outcome required:
# "fail" cleanly, "succeed", or "either" — a throttled link may still carry small answers in time)
FAULTS: dict[str, tuple[dict[str, Any] | None, tuple[str, ...], str]] = {
    "down": (None, ("connection refused",), "fail"),
    "latency": ({"type": "latency", "stream": "downstream", "attributes": {"latency": 8000}},
                ("timeout",), "fail"),
    "timeout": ({"type": "timeout", "stream": "downstream", "attributes": {"timeout": 0}}, ("timeout",), "fail"),
    # "connection failed": what a driver says when the connection broke with no OS error behind it
    # (libpq for any failed start-up, Neo4j for a defunct connection) — kfm_ops/faults.py
    "reset_peer": ({"type": "reset_peer", "stream": "downstream", "attributes": {"timeout": 0}},
                   ("connection reset", "connection closed", "connection failed", "timeout"), "fail"),
    "reset_midstream": ({"type": "limit_data", "stream": "downstream", "attributes": {"bytes": 30000}},
                        ("connection closed", "connection reset", "connection failed", "timeout"), "either"),
    "bandwidth": ({"type": "bandwidth", "stream": "downstream", "attributes": {"rate": 2}},
                  ("timeout", "connection closed", "connection reset", "connection failed"), "either"),
    "latency_brief": ({"type": "latency", "stream": "downstream", "attributes": {"latency": 50}}, (), "succeed"),
}

_observed: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def _write_results() -> Any:
    yield
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(_observed, indent=2))


@pytest.fixture(scope="module")
def stores(owner_pg: Any, search_writer: Any, graph_writer: Any, cache_writer: Any) -> Any:
    def take() -> dict[str, Any]:
        found = fingerprint.everything(owner_pg, search_writer, graph_writer, cache_writer)
        # the runs' own bookkeeping: the ledger, the watermarks, the check history
        for table in ("kfm_ops.audit_ledger", "kfm_ops.sync_watermarks", "kfm_ops.check_runs", "kfm_ops.check_results"):
            found["postgis"].pop(table, None)
        return found
    return take


def _env(service: str, port: int) -> dict[str, str]:
    prefix = f"KFM_{service.upper()}__"
    return {**toxiproxy.through(service, port), prefix + "CONNECT_TIMEOUT": CONNECT, prefix + "QUERY_TIMEOUT": QUERY}


def _message(service: str, output: str) -> str:
    """The line that names what went wrong, as an operator would read it first."""
    lines = output.splitlines()
    for needle in (f"{service} unreachable at", f"{service} failed", "kfm-maint: error:", "failed at step",
                   " failed: "):
        for line in lines:
            if needle in line:
                return line.split(" — check")[0][:220]
    return ""


def _observe(service: str, fault: str, what: str, args: list[str], env: dict[str, str],
             observed: list[dict[str, Any]]) -> dict[str, Any]:
    started = time.monotonic()
    proc = kfm_maint(*args, env=env, timeout=BOUND_SECONDS * 3)
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    cell = {"service": service, "fault": fault, "run": what, "exit": proc.returncode, "seconds": round(seconds, 1),
            "traceback": "Traceback" in output,
            "message": _message(service.split(" ")[0], output)}
    observed.append(cell)
    return {**cell, "output": output}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("service", list(SERVICES))
def test_fault_cell(service: str, fault: str, stores: Any) -> None:
    before = stores()
    run_cell(service, fault, _observed)
    assert stores() == before, "a faulted run changed a store"


def run_cell(service: str, fault: str, observed: list[dict[str, Any]], *, env: dict[str, str] | None = None,
             label: str = "") -> None:
    """One cell: ``service`` behind a proxy with ``fault``; its smoke checks and its action each end within the
    bound, with the documented exit code, naming the service and the fault class, without a traceback."""
    action = SERVICES[service]
    toxic, classes, required = FAULTS[fault]
    with toxiproxy.proxy(f"matrix-{service}", toxiproxy.upstream(service)) as proxy:
        if toxic is None:
            proxy.enable(False)
        else:
            proxy.toxic(toxic["type"], toxic["stream"], **toxic["attributes"])
        cell_env = {**(env or {}), **_env(service, proxy.port)}
        runs = [("smoke checks", ["check", "--", "-m", f"{service} and smoke", "-q", "-p", "no:cacheprovider"])]
        if action:
            runs.append((f"kfm-maint {' '.join(action)}", [*action, "--no-verify"]))
        for what, args in runs:
            cell = _observe(label or service, fault, what, args, cell_env, observed)
            assert cell["seconds"] < BOUND_SECONDS, f"{what} hung: {cell['seconds']}s"
            assert not cell["traceback"], cell["output"][-3000:]
            if required == "succeed" or (required == "either" and cell["exit"] == 0):
                assert cell["exit"] == 0, cell["output"][-3000:]
                continue
            allowed = (4,) if what == "smoke checks" and required == "fail" else (1, 4, 5)
            assert cell["exit"] in allowed, f"{what}: exit {cell['exit']}\n{cell['output'][-3000:]}"
            if cell["exit"] in (4, 5):
                assert service in cell["output"], cell["output"][-3000:]
                assert any(c in cell["output"] for c in classes), (classes, cell["output"][-3000:])


@pytest.mark.parametrize("service", ["postgis", "cache", "search", "graph", "policy"])
def test_one_reset_during_warm_up_is_retried(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    retried: list[str] = []
    with toxiproxy.proxy(f"retry-{service}", toxiproxy.upstream(service)) as proxy:
        proxy.toxic("reset_peer", "downstream", timeout=0)

        def heal(name: str, reason: str) -> None:
            retried.append(reason)
            proxy.clear()  # the fault was transient: the next attempt finds the service back

        for name, value in _env(service, proxy.port).items():
            monkeypatch.setenv(name, value)
        hub = ServiceHub(load_settings(), on_retry=heal)
        try:
            assert hub.client(service) is not None
        finally:
            hub.close()
    assert len(retried) == 1, retried
    assert retried[0].startswith(("connection reset", "connection closed", "connection failed"))


def _two_node_rows() -> list[str]:
    """The search row again on a two-node cluster, and with one node stopped (tests/test_search_cluster.py)."""
    path = RESULTS.with_name("fault-matrix-two-nodes.json")
    if not path.is_file():
        return []
    lines = ["", "### The search row on a two-node cluster", "",
             "`tests/test_search_cluster.py` starts a second OpenSearch node (`devstack/stack up",
             "--opensearch-nodes 2`), gives the dev environment 2 primaries and 1 replica (a contract copy) and runs",
             "the same cells with node 1 behind the proxy; `node_stopped` stops node 2 instead (the cluster turns",
             "yellow: the smoke checks fail, a forced rebuild fails at its `replicas` step after",
             "`KFM_SEARCH__GREEN_TIMEOUT`, 5 s here).", "",
             "| service | fault | run | exit | seconds | first line of the report |", "|---|---|---|---:|---:|---|"]
    for c in json.loads(path.read_text()):
        message = c["message"].replace("|", "\\|") or ("ok" if c["exit"] == 0 else "")
        lines.append(f"| {c['service']} | {c['fault']} | {c['run']} | {c['exit']} | {c['seconds']} | {message} |")
    return [*lines, ""]


def render(cells: list[dict[str, Any]]) -> str:
    services = sorted({c["service"] for c in cells})
    faults = list(dict.fromkeys(c["fault"] for c in cells))
    failing = [c for c in cells if c["exit"] != 0]
    lines = [
        "# Reliability",
        "",
        "What kfm-ops does on a bad day, observed on the real local stack by the test suite",
        "(`tests/test_fault_matrix.py`, `tests/test_interrupted.py`, `tests/test_search_pushback.py`,",
        "`tests/test_concurrency.py`, `tests/test_secrets.py`, `tests/test_fuzz.py`,",
        "`tests/test_least_privilege.py`; all run by `make test`",
        "and CI). Regenerate this page after a run with `python -m tests.test_fault_matrix > docs/reliability.md`.",
        "",
        "## Counts",
        "",
        f"- faults injected: {len({(c['service'], c['fault']) for c in cells})} cells "
        f"({len(services)} services × {len(faults)} faults), {len(cells)} runs through Toxiproxy",
        f"- runs that failed cleanly with a documented exit code: {len(failing)}; "
        f"runs that succeeded through the fault: {len(cells) - len(failing)}",
        f"- tracebacks: {sum(c['traceback'] for c in cells)}",
        f"- slowest run: {max(c['seconds'] for c in cells)} s (bound {BOUND_SECONDS:.0f} s)",
        "- secrets leaked: 0 — a canary in every credential, on success and failure paths, never reaches stdout,",
        "  stderr, the log file, the JSON report, the audit ledger or an error (`tests/test_secrets.py`)",
        "",
        "## Fault matrix",
        "",
        "Each service is reached through a Toxiproxy proxy with connect/query timeouts of "
        f"{CONNECT} s / {QUERY} s. Faults: `down` (proxy disabled), `latency` (8 s, beyond the timeout),",
        "`timeout` (the connection stalls), `reset_peer` (TCP reset), `reset_midstream` (connection cut after",
        "30 kB), `bandwidth` (2 kB/s), `latency_brief` (50 ms: must succeed). For every cell the smoke checks",
        "of the service and the action that needs it most run through the proxy; every store's fingerprint is",
        "the same afterwards. Exit codes: 0 ok, 1 checks failed, 4 service unreachable, 5 action failed.",
        "",
        "| service | fault | run | exit | seconds | first line of the report |",
        "|---|---|---|---:|---:|---|",
    ]
    for c in cells:
        message = c["message"].replace("|", "\\|") or ("ok" if c["exit"] == 0 else "")
        lines.append(f"| {c['service']} | {c['fault']} | {c['run']} | {c['exit']} | {c['seconds']} | {message} |")
    lines += [
        "",
        *_two_node_rows(),
        "A reset during warm-up is retried (3 attempts, 0.5 s × attempt back-off):",
        "`test_one_reset_during_warm_up_is_retried` resets the first connection to postgis, cache, search,",
        "graph and policy and sees the second succeed.",
        "Refusals, timeouts and authentication failures are not retried: they are reported at once.",
        "",
        "## Interrupted runs",
        "",
        "| action | interrupted | how | afterwards |",
        "|---|---|---|---|",
        "| reindex (search) | during bulk | SIGKILL | alias on the old index with all documents; ledger row "
        "open until the next run marks it `aborted`; the half-built index is pruned; the next run converges |",
        "| reindex (search) | during refresh/verify, just before the swap | SIGKILL | same as above |",
        "| reindex (search) | during bulk | SIGTERM | stops at once (exit 5, "
        "`interrupted by SIGTERM during step 'bulk'`), discards the half-built index, ledger `aborted`, "
        "alias untouched |",
        "| reindex (graph) | mid-upsert (batches of 100) | SIGKILL, SIGTERM | the graph check reports exactly "
        "the items not yet rewritten as stale; the next run converges and the check passes |",
        "| cache rebuild | mid-summaries | SIGKILL | every summary is whole (old or new): contract and count "
        "checks pass; the next run converges |",
        "| sync (search, graph, cache) | mid-convergence, a pipeline writing | SIGKILL | the live stores stay "
        "readable; ledger row `aborted` by the next run, which converges (`tests/test_live_production.py`) |",
        "| sync by change slots | mid-convergence, after a pipeline burst | SIGKILL | the slots hold every change "
        "they held before (nothing advanced); the next run converges by them (`tests/test_change_slots.py`) |",
        "",
        "## Live production: a pipeline writing while kfm-ops works",
        "",
        "A stand-in pipeline (`tests/pipeline.py`) writes through the owner role — updates, inserts, deletions, "
        "one dataset retired — while `tests/test_live_production.py` runs:",
        "",
        "| while the pipeline writes | observed |",
        "|---|---|",
        "| `reindex --targets search --force` (40 writes/s) | exit 0: built and verified against one snapshot, "
        "then convergence rounds for the changes committed meanwhile, before and after the swap |",
        "| `reindex --targets graph --prune`, `cache rebuild` | exit 0 |",
        "| pipeline stopped, one `kfm-maint sync` | every consistency and governance check passes; each store's "
        "watermark is the instant of the snapshot the sync read |",
        "| `sync` after a burst (100 writes/s, 2 s, a dataset retired) | writes only what changed: records "
        "written ≤ changes made + the retired dataset's items |",
        "| `sync` by change slots after the same burst | compares only the ids the slots named, not the catalog; "
        "every consistency check passes; the slots hold no canonical change afterwards "
        "(`tests/test_change_slots.py`) |",
        "| the full check run (20 writes/s) | zero failures on changes younger than the SLA (reported as "
        "pending); a drift injected older than the SLA still fails its check |",
        "",
        "Locks are session-level Postgres advisory locks: a killed run's lock goes with its connection, so the",
        "next run proceeds at once.",
        "",
        "## A cluster that pushes back",
        "",
        "`tests/test_search_pushback.py` reindexes into a throw-away OpenSearch node with one write thread,",
        "a write queue of one and `script.allowed_types: none`. Bulk requests sent three at a time are",
        "rejected (429, per document or whole); kfm-maint sends the rejected documents again after",
        "0.5, 1, 2, 4, 8, 10 s (each shortened by a random part of up to half, so the writers do not return",
        "in step; a `bulk.pushed_back` log line each time) and gives up after 7 attempts with exit 5,",
        "`… still pushed back (429)`. The verify's painless digest is refused there, so it reads the doc values",
        "back instead (`digest.read_back` names the reason). The run loads, verifies and swaps every document.",
        "",
        "## Concurrent runs",
        "",
        "| first run | second run, while the first holds its lock | outcome |",
        "|---|---|---|",
        "| cache rebuild | cache rebuild | refused, exit 3, names the holder's run_id |",
        "| reindex --targets graph | reindex --targets search,graph | refused (the graph store is locked), exit 3 |",
        "| reindex --targets graph | reindex --targets search | both succeed: different stores |",
        "",
        "## Bad input",
        "",
        "Hypothesis generates kfm-maint argument lists (known words, unknown words, unicode, empty strings,",
        "negative and huge numbers) and settings values for URL, DSN, environment, timeout, flavour and",
        "threshold variables. Every run ends with exit 0/2/3/4, never a traceback; every usage error is one",
        "line that names the bad value; nothing is written (every service points at a closed port, and",
        "`--dry-run` is always on).",
        "",
        "## Least privilege",
        "",
        "Check sessions cannot write: PostGIS (`default_transaction_read_only`, a SELECT-only role),",
        "Neo4j (READ access mode, refused by the server), OpenSearch (the read-only transport refuses every",
        "write request before it leaves the process), Redis (an ACL user without write commands) —",
        "`tests/test_plugin.py`. Given write-capable credentials, the report header warns",
        "(`WARNING postgis: the check role can write …`) — `tests/test_least_privilege.py`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.loads(Path(RESULTS).read_text())), end="")
