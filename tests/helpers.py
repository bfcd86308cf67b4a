"""Helpers for kfm-ops's own tests: run checks through pytest, run kfm-maint, ports, stack binaries."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfm_ops.checkrun import run_pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class CheckResult:
    outcome: str
    message: str


def run_checks(*selectors: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict[str, CheckResult]:
    """Run checks in a fresh pytest process; return {nodeid: CheckResult} from its JSON report."""
    run = run_pytest([*selectors, "-q", "-p", "no:cacheprovider", "-o", "testpaths=opschecks"], env=env, cwd=ROOT,
                     timeout=timeout)
    if run.report is None:
        raise AssertionError(f"pytest wrote no report (exit {run.returncode}):\n{run.stdout}\n{run.stderr}")
    results = {}
    for test in run.report["tests"]:
        message = ""
        for phase in ("setup", "call", "teardown"):
            part = test.get(phase) or {}
            if part.get("longrepr"):
                message += str(part["longrepr"])
        results[test["nodeid"]] = CheckResult(test["outcome"], message)
    return results


def run_check(nodeid: str, **kwargs: Any) -> CheckResult:
    """Run exactly one check; return its result."""
    results = run_checks(nodeid, **kwargs)
    assert nodeid in results, f"{nodeid} was not collected: {sorted(results)}"
    return results[nodeid]


def kfm_maint(*args: str, env: dict[str, str] | None = None, input: str | None = None,  # noqa: A002
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the kfm-maint CLI in a subprocess, as an operator would."""
    return subprocess.run([sys.executable, "-m", "maintenance.cli", *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          input=input, timeout=timeout, check=False)


def devstack(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``devstack/stack`` on the stack under test (its .env and environment), asserting it succeeded."""
    proc = subprocess.run([str(ROOT / "devstack" / "stack"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, f"devstack/stack {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def stack_binary(name: str) -> str:
    """Where the local stack installed ``name`` (opa, toxiproxy, initdb, redis-server, ...): devstack knows."""
    from devstack.stack import StackError, binary

    try:
        return str(binary(name))
    except StackError as exc:
        raise AssertionError(str(exc)) from None


def free_port() -> int:
    """A TCP port nothing listens on now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Wait until something listens on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


LOCAL_PLAINTEXT = {f"KFM_{service.upper()}__ALLOW_INSECURE_TRANSPORT": "true"
                   for service in ("postgis", "graph", "search", "cache", "policy", "llm")}
"""For a run outside dev against the local stack's plaintext ports: the opt-out an operator would have to set."""
