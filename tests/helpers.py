"""Helpers for kfm-ops's own tests: run checks through pytest, run kfm-maint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class CheckResult:
    outcome: str
    message: str


def run_checks(*selectors: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict[str, CheckResult]:
    """Run checks in a fresh pytest process; return {nodeid: CheckResult} from its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pytest", *selectors, "-q", "-p", "no:cacheprovider",
               "--json-report", f"--json-report-file={report}", "-o", "testpaths=opschecks"]
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if not report.exists():
            raise AssertionError(f"pytest wrote no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        data = json.loads(report.read_text())
    results = {}
    for test in data["tests"]:
        message = ""
        for phase in ("setup", "call", "teardown"):
            part = test.get(phase) or {}
            if part.get("longrepr"):
                message += str(part["longrepr"])
            if part.get("outcome") == "skipped" and not message:
                message = str(part.get("longrepr", ""))
        outcome = test["outcome"]
        results[test["nodeid"]] = CheckResult(outcome, message)
    return results


def run_check(nodeid: str, **kwargs: Any) -> CheckResult:
    """Run exactly one check; return its result."""
    results = run_checks(nodeid, **kwargs)
    assert nodeid in results, f"{nodeid} was not collected: {sorted(results)}"
    return results[nodeid]


def stack_binary(name: str) -> str:
    """Where the local stack installed ``name`` (opa, toxiproxy, initdb, redis-server, ...): devstack knows."""
    from devstack.stack import StackError, binary

    try:
        return str(binary(name))
    except StackError as exc:
        raise AssertionError(str(exc)) from None


def kfm_maint(*args: str, env: dict[str, str] | None = None, input: str | None = None,  # noqa: A002
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the kfm-maint CLI in a subprocess, as an operator would."""
    return subprocess.run([sys.executable, "-m", "maintenance.cli", *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          input=input, timeout=timeout, check=False)
