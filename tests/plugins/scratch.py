"""Throw-away servers of the stack's own software, on free ports, for faults the shared stack must not take.

Real evictions, a broken policy bundle, a replication slot without a standby: injected
into servers that live only for one test (or module), the check pointed at them by env.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.helpers import free_port, stack_binary, wait_port
from tests.proving import PROOF


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
def scratch_opa(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """start(files, v0=False): a throw-away OPA server loading the given .rego files (none: no bundle), in Rego v0
    syntax with ``v0``; returns its URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(files: dict[str, str] | None, v0: bool = False) -> str:
        port = free_port()
        args = [stack_binary("opa"), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error",
                *(["--v0-compatible"] if v0 else [])]
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
    """A throw-away PostgreSQL 15 cluster (wal_level=logical, trust on 127.0.0.1) on a free port.

    shared_buffers is small (16 MB) so a proof can make a table that cannot stay cached.

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
                    "-c wal_level=logical -c max_wal_senders=2 -c shared_buffers=16MB", "start"],
                   check=True, capture_output=True)
    conn = psycopg.connect(host="127.0.0.1", port=port, user=user, dbname="postgres", autocommit=True)
    try:
        def sql(statement: str) -> list[tuple[Any, ...]]:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []  # ALTER SYSTEM, CHECKPOINT: no rows

        yield port, sql
    finally:
        conn.close()
        subprocess.run([*as_pg, stack_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
