"""Helpers for the devstack tests: run devstack/stack, read its config, relocated throw-away stacks."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "devstack" / "stack"
SERVICES = ["postgis", "opensearch", "neo4j", "redis", "opa", "llm", "toxiproxy"]


def load_stack_module() -> ModuleType:
    """devstack/stack.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("devstack_stack", REPO / "devstack" / "stack.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("devstack_stack", mod)
    spec.loader.exec_module(mod)
    return mod


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
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="session")
def stackmod() -> ModuleType:
    return load_stack_module()


@pytest.fixture(scope="session")
def cfg(stackmod: ModuleType) -> dict[str, str]:
    return stackmod.load_config()


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
    """Environment for a throw-away stack in its own DEVSTACK_HOME; torn down afterwards."""
    env = base_env(DEVSTACK_HOME=str(tmp_path / "devstack-home"))
    yield env
    run_stack("down", env=env, timeout=120)
