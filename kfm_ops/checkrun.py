"""Running checks in their own pytest process and reading its JSON report.

One function serves ``kfm-maint check`` (output to the terminal), the verification
after an action (captured, report read back) and kfm-ops's own tests.

The installed checks run isolated (:func:`installed_checks`): Python does not put the
current directory on ``sys.path`` (``-P``), pytest reads the ini that ships with the
checks (``opschecks/kfm-checks.ini``: not named pytest.ini, so ``pytest opschecks/…`` in a
checkout does not pick it up) with their package as rootdir, in a neutral working
directory, without ``PYTEST_ADDOPTS``/``PYTEST_PLUGINS`` — so a ``pytest.ini`` or an
``opschecks/`` folder where an operator happens to stand (or one planted there) never
runs with the harness's write credentials in the environment.
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

from kfm_ops.errors import ActionFailed, UsageError
from kfm_ops.paths import BASE_DIR


@dataclass
class PytestRun:
    """How a pytest process ended: its exit status, its JSON report (None if it wrote none), its output."""

    returncode: int
    report: dict[str, Any] | None
    stdout: str = ""
    stderr: str = ""


ISOLATION_DROPS = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONPATH")


def installed_checks(*args: str) -> list[str]:
    """pytest arguments for the installed opschecks, with their own ini; node ids read ``opschecks/…``.

    The package is found next to this one (they are installed together), never through
    ``sys.path``, which may start with the caller's directory. No conftest.py above it is read.
    """
    package = Path(__file__).resolve().parent.parent / "opschecks"
    if not (package / "__init__.py").is_file():
        raise UsageError(f"the opschecks package is not installed next to kfm_ops ({package})",
                         hint="reinstall kfm-ops")
    return ["-c", str(package / "kfm-checks.ini"), "--rootdir", str(package.parent), "--confcutdir", str(package),
            "--pyargs", "opschecks", *args]


def run_pytest(args: list[str], *, env: dict[str, str] | None = None, inherit_env: bool = True,
               cwd: Path | None = None, report_file: Path | None = None, capture: bool = True,
               timeout: float | None = None, isolated: bool = False) -> PytestRun:
    """``python -m pytest <args> --json-report`` in a child process; the report is always written and read.

    ``env`` is added to this process's environment (or replaces it, ``inherit_env=False``);
    ``report_file`` keeps the report (a temporary one otherwise); ``capture=False`` lets the
    child print to our terminal; ``isolated`` runs it away from the current directory (see above).
    """
    with tempfile.TemporaryDirectory(prefix="kfm-pytest-") as tmp:
        report = Path(report_file).resolve() if report_file else Path(tmp) / "report.json"
        python = [sys.executable, "-P"] if isolated else [sys.executable]
        cmd = [*python, "-m", "pytest", *args, "--json-report", f"--json-report-file={report}"]
        base = dict(os.environ) if inherit_env else {}
        if isolated:
            base = {k: v for k, v in base.items() if k not in ISOLATION_DROPS}
            cwd = Path(tmp)
        if cwd is not None:  # run elsewhere: relative paths in the settings still mean ours (kfm_ops.paths)
            base = {BASE_DIR: os.getcwd(), **base}
        proc = subprocess.run(cmd, cwd=cwd, env={**base, **(env or {})}, capture_output=capture, text=True,
                              timeout=timeout, check=False)
        data = json.loads(report.read_text()) if report.is_file() else None
    return PytestRun(proc.returncode, data, proc.stdout or "", proc.stderr or "")


def verify_report(markers: str, run_id: str) -> dict[str, Any]:
    """Run the installed checks selected by ``markers`` (an action's verification); return the JSON report."""
    # The verification is part of the action: its checks push no metrics of their own (a partial set
    # would replace the scheduled run's group in the Pushgateway); the action's metrics count them.
    run = run_pytest(installed_checks("-m", markers, "-q"), env={"KFM_RUN_ID": run_id,
                                                                  "KFM_METRICS__PUSHGATEWAY_URL": ""}, isolated=True)
    if run.report is None:
        raise ActionFailed("verify", "verify", f"the verification checks did not run (pytest exit {run.returncode})")
    return run.report
