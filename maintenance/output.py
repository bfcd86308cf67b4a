"""What kfm-maint prints: a plan and a summary for people, one JSON document for machines.

Logs (structured, with run_id) go to stderr or the log file; stdout carries only
the plan, progress and summary — or, with ``--json``, exactly one JSON object.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kfm_ops.errors import KfmError
from kfm_ops.redact import redact, redact_obj


class Output:
    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        self.errors = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._document: dict[str, Any] = {}

    def say(self, text: str) -> None:
        if not self.json_mode:
            self.console.print(redact(text), markup=False)

    def plan(self, action: str, plan: Any, environment: str, *, dry_run: bool, verify: str = "") -> None:
        self._document["plan"] = plan.as_dict()
        if self.json_mode:
            return
        head = "PLAN (dry run: nothing will be written)" if dry_run else "PLAN"
        lines = [f"{head} — {action} on {environment}", f"  what:     {plan.what}",
                 f"  where:    {', '.join(plan.where)}",
                 "  how much: " + ", ".join(f"{k}={v}" for k, v in plan.how_much.items()),
                 f"  rollback: {plan.rollback}",
                 f"  verify:   {verify}"]
        lines += [f"  {n}. {step}" for n, step in enumerate(plan.steps, 1)]
        self.say("\n".join(lines))

    def progress(self, label: str, done: int, total: int | None) -> None:
        """Progress bars on a terminal; nothing in CI or --json (the logs carry counts)."""
        if self.json_mode or not self.console.is_terminal:
            return
        if self._progress is None:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console, transient=True)
            self._progress.start()
        if label not in self._tasks:
            self._tasks[label] = self._progress.add_task(label, total=total)
        self._progress.update(self._tasks[label], completed=done, total=total)

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def verification(self, markers: str, summary: dict[str, Any], failed: list[str]) -> None:
        self._stop_progress()
        counts = ", ".join(f"{v} {k}" for k, v in summary.items() if k not in ("total", "collected"))
        self.say(f"VERIFY (-m {markers}): {counts or 'no checks selected'}")
        for nodeid in failed:
            self.say(f"  FAILED {nodeid}")

    def warn(self, text: str) -> None:
        """A warning for people (stderr), also in the JSON document."""
        self._stop_progress()
        self._document.setdefault("warnings", []).append(redact(text))
        self.errors.print(f"kfm-maint: warning: {redact(text)}", markup=False)

    def error(self, exc: KfmError) -> None:
        self._stop_progress()
        self._document["error"] = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        self.errors.print(f"kfm-maint: error: {exc}", markup=False)  # stderr, in --json mode too

    def result(self, document: dict[str, Any], code: int) -> None:
        self._stop_progress()
        merged = {**document, **self._document, "exit_code": int(code), "ok": int(code) == 0}
        if self.json_mode:
            sys.stdout.write(json.dumps(redact_obj(merged), sort_keys=True, default=str) + "\n")
            return
        status = "OK" if code == 0 else "FAILED"
        counts = document.get("counts") or {}
        summary = " ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict | list))
        self.say(f"{status} | {document.get('command')} | run_id={document.get('run_id')} | exit={int(code)} {summary}")
