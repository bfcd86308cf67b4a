"""Running checks in their own pytest process and reading its JSON report.

One function serves ``kfm-maint check`` (output to the terminal), the verification
after an action (captured, report read back) and kfm-ops's own tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfm_ops.errors import ActionFailed


@dataclass
class PytestRun:
    """How a pytest process ended: its exit status, its JSON report (None if it wrote none), its output."""

    returncode: int
    report: dict[str, Any] | None
    stdout: str = ""
    stderr: str = ""


def run_pytest(args: list[str], *, env: dict[str, str] | None = None, inherit_env: bool = True,
               cwd: Path | None = None, report_file: Path | None = None, capture: bool = True,
               timeout: float | None = None) -> PytestRun:
    """``python -m pytest <args> --json-report`` in a child process; the report is always written and read.

    ``env`` is added to this process's environment (or replaces it, ``inherit_env=False``);
    ``report_file`` keeps the report (a temporary one otherwise); ``capture=False`` lets the
    child print to our terminal.
    """
    with tempfile.TemporaryDirectory(prefix="kfm-pytest-") as tmp:
        report = Path(report_file) if report_file else Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pytest", *args, "--json-report", f"--json-report-file={report}"]
        base = dict(os.environ) if inherit_env else {}
        proc = subprocess.run(cmd, cwd=cwd, env={**base, **(env or {})}, capture_output=capture, text=True,
                              timeout=timeout, check=False)
        data = json.loads(report.read_text()) if report.is_file() else None
    return PytestRun(proc.returncode, data, proc.stdout or "", proc.stderr or "")


def verify_report(markers: str, run_id: str) -> dict[str, Any]:
    """Run the installed checks selected by ``markers`` (an action's verification); return the JSON report."""
    # The verification is part of the action: its checks push no metrics of their own (a partial set
    # would replace the scheduled run's group in the Pushgateway); the action's metrics count them.
    run = run_pytest(["--pyargs", "opschecks", "-m", markers, "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                      "--strict-markers"], env={"KFM_RUN_ID": run_id, "KFM_METRICS__PUSHGATEWAY_URL": ""})
    if run.report is None:
        raise ActionFailed("verify", "verify", f"the verification checks did not run (pytest exit {run.returncode})")
    return run.report
