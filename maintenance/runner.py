"""Runs one mutating action through the safety gates, and reports it.

plan → (dry-run: print the plan, stop; nothing written anywhere) → intent gate
→ store locks → ledger start → apply → ledger end → verify (the checks that
cover what the action touched) → report. Every refusal happens before the first
write; the ledger row is completed whatever happens after it was opened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kfm_ops import gates, log, migrate
from kfm_ops.clients import describe, service_of
from kfm_ops.errors import ActionFailed, ExitCode, KfmError, ServiceUnavailable
from kfm_ops.hub import ServiceHub
from kfm_ops.interrupt import STOP
from kfm_ops.report import Report, write_json_atomically
from kfm_ops.settings import SERVICES, Settings
from maintenance.output import Output


@dataclass
class Plan:
    """What an action will do: what, how much, where, and how to roll back."""

    what: str
    where: list[str]
    how_much: dict[str, Any]
    rollback: str
    steps: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def nothing_to_do(self) -> bool:
        return bool(self.details.get("nothing_to_do"))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Action(Protocol):
    name: str
    stores: tuple[str, ...]  # what it locks
    verify_markers: str  # pytest -m expression of the checks that cover it

    def plan(self, hub: ServiceHub) -> Plan: ...

    def apply(
        self, hub: ServiceHub, plan: Plan, progress: Callable[[str, int, int | None], None]
    ) -> dict[str, Any]: ...


class Interrupted(KfmError):
    exit_code = ExitCode.ACTION_FAILED


def _on_sigterm(_signum: int, _frame: Any) -> None:
    STOP.set()  # threads (bulk workers) stop too, not only the main thread
    raise Interrupted("interrupted by SIGTERM", hint="the live state was left as it was; re-run to converge")


@dataclass
class RunContext:
    settings: Settings
    intent: gates.Intent
    out: Output
    run_id: str
    verify: bool = True
    report_file: Path | None = None


def run(action: Action, ctx: RunContext) -> int:
    """Run ``action``; return the documented exit code."""
    started = time.monotonic()
    report = Report(run_id=ctx.run_id, command=action.name, environment=ctx.settings.environment)
    hub = ServiceHub(ctx.settings, writes_allowed=not ctx.intent.dry_run,
                     application_name=gates.application_name(ctx.run_id, action.name))
    code = ExitCode.OK
    try:
        try:
            code = _run(action, ctx, hub, report)
        except Exception as exc:  # noqa: BLE001 — mapped to our errors, never a traceback
            raise _as_kfm_error(exc, ctx.settings) from None
    except KfmError as exc:
        code = exc.exit_code
        report.add(f"kfm-maint::{action.name}::error", "failed", 0.0, longrepr=str(exc))
        ctx.out.error(exc)
    finally:
        hub.close()
        report.kfm["exit_code"] = int(code)
        report.kfm["duration_s"] = round(time.monotonic() - started, 3)  # connect → plan → apply → verify
        if ctx.report_file:
            write_json_atomically(ctx.report_file, report.to_dict(int(code)))
    ctx.out.result(report.kfm, code)
    return int(code)


def _as_kfm_error(exc: Exception, settings: Settings) -> Exception:
    """A driver error outside apply (planning, gates): the service it came from is unavailable."""
    if isinstance(exc, KfmError):
        return exc
    service = service_of(exc)
    section = settings.section(service) if service in SERVICES else None
    if service is None:
        return exc
    return ServiceUnavailable(service, section.where if section else "?", describe(exc))


def _step(report: Report, action: str, step: str) -> Callable[..., None]:
    def done(started: float, outcome: str = "passed", longrepr: str = "") -> None:
        report.add(f"kfm-maint::{action}::{step}", outcome, time.monotonic() - started, longrepr=longrepr)
    return done


def _run(action: Action, ctx: RunContext, hub: ServiceHub, report: Report) -> ExitCode:
    logger = log.get_logger(action=action.name)
    started = time.monotonic()
    control = hub.writer("postgis") if not ctx.intent.dry_run else hub.client("postgis")
    marker = gates.database_environment(control)
    target = gates.check_intent(ctx.intent, settings_environment=ctx.settings.environment, database_marker=marker)

    t = time.monotonic()
    plan = action.plan(hub)
    _step(report, action.name, "plan")(t)
    report.kfm["plan"] = plan.as_dict()
    ctx.out.plan(action.name, plan, target, dry_run=ctx.intent.dry_run)
    logger.info("action.plan", plan=plan.as_dict(), environment=target)
    if ctx.intent.dry_run:
        report.kfm["dry_run"] = True
        return ExitCode.OK

    _ensure_ops_schema(action, control, ctx.settings)
    locks = gates.StoreLocks(control, action.name)
    locks.acquire(list(action.stores))
    ledger = gates.Ledger(control, run_id=ctx.run_id, action=action.name, actor=ctx.settings.actor, environment=target)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    counts: dict[str, Any] = {}
    try:
        ledger.mark_abandoned()
        ledger.start(plan.as_dict())
        logger.info("action.start")
        t = time.monotonic()
        try:
            counts = action.apply(hub, plan, ctx.out.progress)
        except BaseException as exc:  # noqa: BLE001 — record every way an apply can end, then re-raise ours
            if isinstance(exc, KeyboardInterrupt):
                exc = Interrupted("interrupted", hint="the live state was left as it was; re-run to converge")
            error = exc if isinstance(exc, KfmError) else ActionFailed(
                action.name, "apply", f"{service_of(exc) or 'a service'} failed: {describe(exc)}")
            ledger.end("aborted" if isinstance(error, Interrupted) else "failed", counts, str(error))
            _step(report, action.name, "apply")(t, "failed", str(error))
            raise error from None
        ledger.end("succeeded", counts)
        _step(report, action.name, "apply")(t)
        report.kfm["counts"] = counts
        logger.info("action.end", outcome="succeeded", duration_s=round(time.monotonic() - started, 3), **counts)
    finally:
        signal.signal(signal.SIGTERM, previous)
        locks.release()

    if ctx.verify and action.verify_markers:
        t = time.monotonic()
        verified = verify(action.verify_markers, ctx.run_id)
        report.merge(verified)
        failed = [x["nodeid"] for x in verified.get("tests", []) if x["outcome"] in ("failed", "error")]
        report.kfm["verification"] = {"markers": action.verify_markers, "summary": verified.get("summary", {}),
                                      "failed": failed}
        _step(report, action.name, "verify")(t, "failed" if failed else "passed", "\n".join(failed))
        ctx.out.verification(action.verify_markers, verified.get("summary", {}), failed)
        if failed:
            return ExitCode.CHECKS_FAILED
    return ExitCode.OK


def _ensure_ops_schema(action: Action, conn: Any, settings: Settings) -> None:
    """The ledger lives in kfm_ops: schema-owning actions create it, others need it present."""
    exists = conn.execute("SELECT to_regclass('kfm_ops.audit_ledger') IS NOT NULL").fetchone()
    if exists and exists[0]:
        return
    if getattr(action, "bootstraps_schema", False):
        migrate.apply(conn, settings.contracts_dir)
        return
    raise ActionFailed(action.name, "preflight", "the kfm_ops schema (audit ledger) does not exist",
                       hint="run `kfm-maint migrate` first")


def verify(markers: str, run_id: str) -> dict[str, Any]:
    """Run the checks selected by ``markers`` in a separate pytest process; return its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "verify.json"
        cmd = [sys.executable, "-m", "pytest", "--pyargs", "opschecks", "-m", markers, "-q", "-p", "no:cacheprovider",
               "--json-report", f"--json-report-file={path}", "-o", "addopts=", "--strict-markers"]
        proc = subprocess.run(cmd, env={**os.environ, "KFM_RUN_ID": run_id}, capture_output=True, text=True,
                              check=False)
        if not path.exists():
            raise ActionFailed("verify", "verify",
                               f"the verification checks did not run (pytest exit {proc.returncode})")
        data: dict[str, Any] = json.loads(path.read_text())
        return data
