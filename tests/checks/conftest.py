"""Fault-injection fixtures for the proofs of the health and contract checks.

Baseline fixtures make sure the state a check inspects exists (the schema, the
search alias, the graph constraints, the cache meta hash) so that a proof fails
the check for the injected fault and not for a missing precondition. They work on
a stack the ``kfm-maint`` actions populated (they then change nothing) and on an
empty one (they create the contract state and remove exactly that at the end).

Faults that cannot be injected into the shared stack without harming it
(evictions, a standby, a broken policy) run against throw-away servers of the
same software on free ports, and the check is pointed at them through env.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from kfm_ops import contracts, migrate
from kfm_ops.settings import Settings
from tests.helpers import stack_binary

PROOF = "kfm-proof"
"""Prefix of every object a proof creates (indices, keys, ids, application names)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def pg_connect(settings: Settings, application_name: str, *, autocommit: bool = True) -> psycopg.Connection:
    """An extra owner connection (for sessions that must hold a state: a lock, an open transaction)."""
    section = settings.postgis
    assert section is not None and section.write_dsn and section.write_password
    return psycopg.connect(section.write_dsn, password=section.write_password.get_secret_value(),
                           application_name=application_name, autocommit=autocommit, connect_timeout=20)


# --------------------------------------------------------------------------- baselines

@pytest.fixture(scope="session")
def pg_baseline(owner_pg: Any) -> Any:
    """The canonical schema applied (idempotent migrations; left in place, it is the contract)."""
    migrate.apply(owner_pg)
    return owner_pg


@pytest.fixture(scope="session")
def matview_baseline(pg_baseline: Any) -> Iterator[Any]:
    """kfm_cache.dataset_stats populated; back to WITH NO DATA at the end if it was not."""
    populated = pg_baseline.execute(
        "SELECT ispopulated FROM pg_matviews WHERE schemaname = 'kfm_cache' AND matviewname = 'dataset_stats'"
    ).fetchone()[0]
    if not populated:
        pg_baseline.execute("REFRESH MATERIALIZED VIEW kfm_cache.dataset_stats")
    yield pg_baseline
    if not populated:
        pg_baseline.execute("REFRESH MATERIALIZED VIEW kfm_cache.dataset_stats WITH NO DATA")


@pytest.fixture(scope="session")
def search_baseline(search_writer: Any) -> Iterator[str]:
    """The contract alias resolves to one index with the contract mapping; returns that index."""
    contract = contracts.load("search")
    alias = contract["alias"]
    created = None
    if not search_writer.indices.exists_alias(name=alias):
        created = f"{contract['index_prefix']}1"
        if not search_writer.indices.exists(index=created):
            search_writer.indices.create(index=created, body={
                "settings": contract["settings"], "mappings": contract["mappings"],
                "aliases": {alias: {}}})
        else:
            search_writer.indices.put_alias(index=created, name=alias)
    index = sorted(search_writer.indices.get_alias(name=alias))[0]
    yield index
    if created and sorted(search_writer.indices.get_alias(name=alias, ignore_unavailable=True)) == [created]:
        search_writer.indices.delete(index=created)


@pytest.fixture(scope="session")
def graph_baseline(graph_writer: Any) -> Iterator[Any]:
    """Every graph.json constraint exists; the ones created here are dropped at the end."""
    existing = {r["name"] for r in graph_writer.run("SHOW CONSTRAINTS YIELD name RETURN name")}
    created = []
    for c in contracts.load("graph")["constraints"]:
        if c["name"] not in existing:
            graph_writer.run(create_constraint(c))
            created.append(c["name"])
    graph_writer.run("CALL db.awaitIndexes(60)")
    yield graph_writer
    for name in created:
        graph_writer.run(f"DROP CONSTRAINT `{name}` IF EXISTS")


def create_constraint(c: dict[str, str], prop: str | None = None) -> str:
    return (f"CREATE CONSTRAINT `{c['name']}` IF NOT EXISTS FOR (n:`{c['label']}`) "
            f"REQUIRE n.`{prop or c['property']}` IS UNIQUE")


@pytest.fixture(scope="session")
def cache_baseline(cache_writer: Any) -> Iterator[Any]:
    """The cache meta hash exists; created here (and deleted at the end) only when missing."""
    redis_contract = contracts.load("cache")["redis"]
    key = redis_contract["meta_key"]
    created = not cache_writer.exists(key)
    if created:
        cache_writer.hset(key, mapping={f: f"{PROOF}-baseline" for f in redis_contract["meta_fields"]})
    yield cache_writer
    if created:
        cache_writer.delete(key)


# --------------------------------------------------------------------------- restore helpers

@pytest.fixture
def redis_snapshot(kfm_settings: Settings) -> Iterator[Callable[[str], None]]:
    """snapshot(key): DUMP the key now (with its TTL) and RESTORE it exactly at teardown."""
    import redis

    section = kfm_settings.cache
    assert section is not None and section.write_password
    binary = redis.Redis.from_url(section.url, username=section.write_username,
                                  password=section.write_password.get_secret_value(), decode_responses=False)
    saved: dict[str, tuple[Any, int]] = {}

    def snapshot(key: str) -> None:
        saved[key] = (binary.dump(key), int(binary.pttl(key)))  # type: ignore[arg-type]

    yield snapshot
    try:
        for key, (payload, pttl) in saved.items():
            binary.delete(key)
            if payload is not None:
                binary.restore(key, max(pttl, 0), payload, replace=True)
    finally:
        binary.close()


@pytest.fixture
def contracts_copy(tmp_path: Path) -> Callable[[str, Callable[[dict[str, Any]], None]], dict[str, str]]:
    """edit(name, change): a copy of the contracts dir with one contract changed; returns the env to use it."""

    def edit(name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, str]:
        target = tmp_path / "contracts"
        if not target.exists():
            shutil.copytree(contracts.BUILTIN, target)
        data = json.loads((target / f"{name}.json").read_text())
        change(data)
        (target / f"{name}.json").write_text(json.dumps(data))
        return {"KFM_CONTRACTS_DIR": str(target)}

    return edit


class Holder:
    """A session kept busy in a background thread (a long query, a lock wait)."""

    def __init__(self, conn: psycopg.Connection, sql: str) -> None:
        self.conn = conn
        self.pid = conn.info.backend_pid
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(sql,), daemon=True)
        self.thread.start()

    def _run(self, sql: str) -> None:
        try:
            self.conn.execute(sql)  # type: ignore[arg-type]
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def pg_sessions(kfm_settings: Settings, owner_pg: Any) -> Iterator[Callable[[str], psycopg.Connection]]:
    """open(app_name): extra owner sessions, terminated and closed at teardown."""
    opened: list[psycopg.Connection] = []

    def open_session(name: str) -> psycopg.Connection:
        conn = pg_connect(kfm_settings, f"{PROOF}-{name}")
        opened.append(conn)
        return conn

    yield open_session
    for conn in opened:
        with contextlib.suppress(Exception):
            owner_pg.execute("SELECT pg_cancel_backend(%s)", (conn.info.backend_pid,))
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()


# --------------------------------------------------------------------------- throw-away servers

@pytest.fixture
def scratch_redis() -> Iterator[tuple[int, Any]]:
    """A throw-away redis-server (no auth, 2 MB maxmemory, volatile-lru) on a free port."""
    import redis

    exe = stack_binary("redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", tmp, "--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
            yield port, client
            client.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture
def scratch_opa(tmp_path: Path) -> Iterator[Callable[[dict[str, str] | None], str]]:
    """start(files): a throw-away OPA server loading the given .rego files (none: no bundle); returns its URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(files: dict[str, str] | None) -> str:
        port = free_port()
        args = [stack_binary("opa"), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"]
        if files:
            bundle = tmp_path / f"bundle-{port}"
            bundle.mkdir()
            for name, text in files.items():
                (bundle / name).write_text(text)
            args += ["--bundle", str(bundle)]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(port)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/health?bundles=true").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def scratch_postgres() -> Iterator[tuple[int, Callable[[str], Any]]]:
    """A throw-away PostgreSQL 15 cluster (wal_level=replica, trust on 127.0.0.1) on a free port.

    Yields (port, sql) where sql(statement) runs as its superuser. As root the
    cluster runs as the postgres OS user.
    """
    root = Path(tempfile.mkdtemp(prefix=f"{PROOF}-pg-"))
    data = root / "data"
    as_pg: list[str] = []
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*as_pg, stack_binary("initdb"), "-D", str(data), "-U", user, "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, stack_binary("pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
                    "-c wal_level=replica -c max_wal_senders=2", "start"], check=True, capture_output=True)
    conn = psycopg.connect(host="127.0.0.1", port=port, user=user, dbname="postgres", autocommit=True)
    try:
        yield port, lambda sql: conn.execute(sql).fetchall()
    finally:
        conn.close()
        subprocess.run([*as_pg, stack_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def toxiproxy() -> Iterator[Callable[[str, str, int], str]]:
    """proxy(name, upstream_host_port, latency_ms): a Toxiproxy proxy with latency; returns its listen address."""
    from tests.toxiproxy import Proxy

    made: list[Proxy] = []

    def proxy(name: str, upstream: str, latency_ms: int) -> str:
        made.append(p := Proxy(f"{PROOF}-{name}", upstream))  # replaces one a killed run left
        p.toxic("latency", latency=latency_ms, jitter=0)
        return f"127.0.0.1:{p.port}"

    yield proxy
    for p in made:
        with contextlib.suppress(Exception):
            p.close()


def assert_fails(nodeid: str, *needles: str, env: dict[str, str] | None = None,
                 unreachable: bool = False) -> str:
    """Run one check in a fresh pytest process; assert it failed (or errored, for an unreachable
    service) with a message naming every needle. Returns the message."""
    from tests.helpers import run_check

    return assert_failed(nodeid, run_check(nodeid, env=env), *needles, unreachable=unreachable)


def assert_fails_injected(nodeid: str, inject: Callable[[], None], holds: Callable[[], bool], *needles: str,
                          attempts: int = 3) -> str:
    """inject(), then assert_fails — for a fault the server may undo by itself during the check run.

    When the check passed and ``holds()`` says the fault is gone, the check was right: inject
    again (up to ``attempts`` times). A pass while the fault still holds fails as usual.
    """
    from tests.helpers import run_check

    for _ in range(attempts):
        inject()
        result = run_check(nodeid)
        if result.outcome != "passed" or holds():
            break
    return assert_failed(nodeid, result, *needles)


def assert_failed(nodeid: str, result: Any, *needles: str, unreachable: bool = False) -> str:
    """Assert a check's result (tests.helpers.run_check) is a failure naming every needle."""
    allowed = ("failed", "error") if unreachable else ("failed",)
    assert result.outcome in allowed, f"{nodeid}: expected {'/'.join(allowed)}, got {result.outcome}: {result.message}"
    missing = [n for n in needles if n not in result.message]
    assert not missing, f"{nodeid} failed, but its message does not name {missing}: {result.message}"
    return result.message
