"""The JSON report, in pytest-json-report's schema, for checks and actions alike.

Checks get theirs from pytest-json-report itself (the plugin redacts it and adds a
``kfm`` section). Actions build the same shape here: each step of an action is a
"test" entry, and the verification checks' entries are merged in. One dashboard
reads both.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from kfm_ops.redact import redact_obj


class Report:
    def __init__(self, *, run_id: str, command: str, environment: str) -> None:
        self.run_id = run_id
        self.command = command
        self.environment = environment
        self.created = time.time()
        self.tests: list[dict[str, Any]] = []
        self.kfm: dict[str, Any] = {"run_id": run_id, "command": command, "environment": environment}

    def add(self, nodeid: str, outcome: str, duration: float, *, longrepr: str = "", **metadata: Any) -> None:
        """Record one step (``outcome``: passed / failed / skipped / error)."""
        call: dict[str, Any] = {"duration": round(duration, 6), "outcome": outcome}
        if longrepr:
            call["longrepr"] = longrepr
        self.tests.append({
            "nodeid": nodeid,
            "lineno": 0,
            "outcome": outcome,
            "keywords": [nodeid.split("::")[0], "kfm-maint"],
            "setup": {"duration": 0.0, "outcome": "passed"},
            "call": call,
            "teardown": {"duration": 0.0, "outcome": "passed"},
            "metadata": metadata,
        })

    def merge(self, pytest_report: dict[str, Any]) -> None:
        """Append the test entries of a pytest-json-report document (verification checks)."""
        self.tests.extend(pytest_report.get("tests", []))

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for test in self.tests:
            counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
        return counts

    def to_dict(self, exitcode: int) -> dict[str, Any]:
        summary: dict[str, int] = dict(self.outcomes())
        summary["total"] = summary["collected"] = len(self.tests)
        return redact_obj({  # type: ignore[no-any-return]
            "created": self.created,
            "duration": round(time.time() - self.created, 6),
            "exitcode": exitcode,
            "root": os.getcwd(),
            "environment": {"kfm_environment": self.environment, "run_id": self.run_id},
            "summary": summary,
            "collectors": [],
            "tests": self.tests,
            "warnings": [],
            "kfm": self.kfm,
        })


def write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` so that readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(redact_obj(document), handle, indent=2, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
