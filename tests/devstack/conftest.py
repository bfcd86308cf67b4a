"""Helpers for the devstack tests: run devstack/stack, read its config, relocated throw-away stacks."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.config import load_config
from devstack.services import SERVICE_CLASSES

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "devstack" / "stack"
SERVICES = ["postgis", "opensearch", "neo4j", "redis", "opa", "llm", "toxiproxy", "prometheus", "pushgateway",
            "stunnel"]
PORT_KEYS = [key for cls in SERVICE_CLASSES for key in (*cls.port_keys, *cls.tls_port_keys)]
OPENSEARCH_MAX_PORT = 9299  # the runner binds HTTP ports up to this one


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSTACK_")}
    env.update(extra)
    return env


def run_stack(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STACK), *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else base_env(), cwd=REPO, stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_runner_port() -> int:
    """A free port the OpenSearch runner accepts (at most 9299), away from the shared stack's 9200/9300."""
    for port in range(OPENSEARCH_MAX_PORT - 1, 9250, -1):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    pytest.fail("no free port in 9251-9298 for a throw-away stack's OpenSearch")


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="session")
def cfg() -> dict[str, str]:
    return load_config()


@pytest.fixture(scope="session")
def running_stack() -> dict[str, dict]:
    """The real local stack, started (idempotently) if it is not up yet; status rows by name."""
    res = run_stack("status", "--json", timeout=120)
    if res.returncode != 0:
        up = run_stack("up", timeout=3000)
        assert up.returncode == 0, f"devstack/stack up failed:\n{up.stdout}\n{up.stderr}"
        res = run_stack("status", "--json", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return {row["name"]: row for row in json.loads(res.stdout)}


@pytest.fixture
def scratch_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a throw-away stack: its own DEVSTACK_HOME and its own free ports; reset afterwards.

    Every DEVSTACK_*_PORT is set, so nothing the test starts can touch the shared stack's ports.
    """
    others = [k for k in PORT_KEYS if k != "DEVSTACK_OPENSEARCH_PORT"]
    with contextlib.ExitStack() as held:  # hold each port while picking the next: all distinct
        socks = [held.enter_context(socket.socket()) for _ in others]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = {key: str(s.getsockname()[1]) for key, s in zip(others, socks, strict=True)}
    ports["DEVSTACK_OPENSEARCH_PORT"] = str(free_runner_port())
    env = base_env(DEVSTACK_HOME=str(tmp_path / "devstack-home"), **ports)
    yield env
    # reset, not just down: it also removes a PostgreSQL cluster relocated to /var/tmp (the postgres
    # OS user cannot reach pytest's private tmp_path)
    run_stack("reset", env=env, timeout=120)
