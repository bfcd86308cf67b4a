"""Runs one mutating action through the safety gates, and reports it.

plan → (dry-run: print the plan, stop; nothing written anywhere) → intent gate
→ store locks → ledger start → apply → ledger end → verify (the checks that
cover what the action touched) → report. Every refusal happens before the first
write; the ledger row is completed whatever happens after it was opened.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfm_ops import identity, log, transport
from kfm_ops.checkrun import verify_report
from kfm_ops.errors import ActionFailed, ActionRefused, ExitCode, Interrupted, KfmError, ServiceError
from kfm_ops.hub import ServiceHub
from kfm_ops.interrupt import STOP, interrupted
from kfm_ops.junit import write_junit
from kfm_ops.metrics import ACTION_JOB, action_outcome, action_registry
from kfm_ops.report import Report, write_json_atomically
from kfm_ops.settings import Settings
from kfm_ops.stores.postgis import PostgisStore
from maintenance import gates, migrate
from maintenance.action import Action, Plan, RunContext
from maintenance.checks import publish_metrics
from maintenance.output import Output


def _on_sigterm(_signum: int, _frame: Any) -> None:
    STOP.set()  # threads (bulk workers) stop too, not only the main thread
    raise interrupted()


@dataclass
class Invocation:
    """How kfm-maint was asked to run an action."""

    settings: Settings
    intent: gates.Intent
    out: Output
    run_id: str
    verify: bool = True
    report_file: Path | None = None
    metrics_file: Path | None = None
    junit_file: Path | None = None


def run(action: Action[Any], inv: Invocation) -> int:
    """Run ``action``; return the documented exit code."""
    started = time.monotonic()
    report = Report(run_id=inv.run_id, command=action.name, environment=inv.settings.environment_label)
    hub = ServiceHub(inv.settings, writes_allowed=not inv.intent.dry_run,
                     application_name=gates.application_name(inv.run_id, action.name))
    code = ExitCode.OK
    was_interrupted = False
    last_success: float | None = None
    try:
        code = _run(action, inv, hub, report)
    except KfmError as exc:
        code = exc.exit_code
        was_interrupted = isinstance(exc, Interrupted)
        report.add(f"kfm-maint::{action.name}::error", "failed", 0.0, longrepr=str(exc))
        inv.out.error(exc)
    finally:
        if inv.metrics_file or inv.settings.metrics.pushgateway_url:
            last_success = _last_success(hub, action.name, inv.settings.environment_label)
        hub.close()
        report.kfm["exit_code"] = int(code)
        report.kfm["outcome"] = action_outcome(int(code), was_interrupted)
        report.kfm["duration_s"] = round(time.monotonic() - started, 3)  # connect → plan → apply → verify
        document = report.to_dict(int(code))
        if inv.report_file:
            write_json_atomically(inv.report_file, document)
        if inv.junit_file:
            write_junit(inv.junit_file, document, suite=f"kfm-maint {action.name}")
    if not inv.intent.dry_run and (inv.metrics_file or inv.settings.metrics.pushgateway_url):
        publish_metrics(action_registry(document, last_success=last_success), inv.settings,
                        str(inv.metrics_file) if inv.metrics_file else None, job=ACTION_JOB,
                        grouping={"environment": inv.settings.environment_label, "action": action.name},
                        say=inv.out.say)
    inv.out.result(report.kfm, code)
    return int(code)


def _last_success(hub: ServiceHub, action: str, environment: str) -> float | None:
    """When ``action`` last succeeded in ``environment``, from the ledger (None when it cannot be read)."""
    try:
        conn = hub.postgis()
        if not conn.exists("kfm_ops.audit_ledger"):
            return None
        value = conn.scalar("SELECT extract(epoch FROM max(ended_at)) FROM kfm_ops.audit_ledger "
                            "WHERE action = %s AND environment = %s AND outcome = 'succeeded'", (action, environment))
    except KfmError:
        return None
    return float(value) if value is not None else None


def _step(report: Report, action: str, step: str) -> Callable[..., None]:
    def done(started: float, outcome: str = "passed", longrepr: str = "") -> None:
        report.add(f"kfm-maint::{action}::{step}", outcome, time.monotonic() - started, longrepr=longrepr)
    return done


def _run(action: Action[Any], inv: Invocation, hub: ServiceHub, report: Report) -> ExitCode:
    logger = log.get_logger(action=action.name)
    started = time.monotonic()
    # before anything connects: no credential leaves over a transport the environment does not allow
    used = gates.services_of((*action.stores, *action.derived))
    transport.require_secure(inv.settings, used)
    waived = transport.waived(inv.settings, used)
    for waiver in waived:
        inv.out.warn(transport.waiver_line(waiver))
    report.kfm["insecure_transport_allowed"] = [str(w) for w in waived]
    control = hub.postgis(write=not inv.intent.dry_run)
    environment = inv.settings.environment
    assert environment is not None  # the CLI refuses actions without KFM_ENVIRONMENT
    target = gates.check_intent(inv.intent, settings_environment=environment,
                                database_marker=control.environment_marker(), stamping=action.bootstraps_schema)
    _require_same_deployment(action, hub, control)

    _require_current_schema(action, control, inv.settings)
    t = time.monotonic()
    plan = action.plan(hub)
    _step(report, action.name, "plan")(t)
    report.kfm["plan"] = plan.as_dict()
    inv.out.plan(action.name, plan, target, dry_run=inv.intent.dry_run, verify=_verification(action, inv))
    logger.info("action.plan", plan=plan.as_dict(), environment=target)
    if inv.intent.dry_run:
        report.kfm["dry_run"] = True
        return ExitCode.OK

    counts = _apply_locked(action, plan, inv, hub, control, target, report)
    report.kfm["counts"] = counts
    logger.info("action.end", outcome="succeeded", duration_s=round(time.monotonic() - started, 3), **counts)

    if inv.verify and action.verify_markers:
        t = time.monotonic()
        verified = verify_report(action.verify_markers, inv.run_id)
        report.merge(verified)
        failed = [x["nodeid"] for x in verified.get("tests", []) if x["outcome"] in ("failed", "error")]
        report.kfm["verification"] = {"markers": action.verify_markers, "summary": verified.get("summary", {}),
                                      "failed": failed}
        _step(report, action.name, "verify")(t, "failed" if failed else "passed", "\n".join(failed))
        inv.out.verification(action.verify_markers, verified.get("summary", {}), failed)
        if failed:
            return ExitCode.CHECKS_FAILED
    return ExitCode.OK


def _apply_locked(action: Action[Any], plan: Plan[Any], inv: Invocation, hub: ServiceHub, control: PostgisStore,
                  target: str, report: Report) -> dict[str, Any]:
    """Lock, open the ledger row, (bootstrap the schema,) apply, close the row — whatever happens."""
    locks = gates.StoreLocks(control, action.name)
    locks.acquire(list(action.stores))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _ensure_ops_schema(action, control, inv.settings)  # under the lock: only `migrate` creates the ledger
        ledger = gates.Ledger(control, run_id=inv.run_id, action=action.name, actor=inv.settings.actor,
                              environment=target, reconnect=lambda: hub.fresh_postgis_writer())
        ledger.mark_abandoned()
        ledger.start(plan.as_dict())
        log.get_logger(action=action.name).info("action.start")
        t = time.monotonic()
        counts: dict[str, Any] = {}
        try:
            counts = action.apply(hub, plan, RunContext(run_id=inv.run_id, environment=target,
                                                        progress=inv.out.progress, checkpoint=locks.verify))
        except BaseException as exc:  # noqa: BLE001 — record every way an apply can end, then re-raise ours
            error = _apply_error(action, exc)
            _ledger_end(ledger, report, inv, "aborted" if isinstance(error, Interrupted) else "failed", counts,
                        str(error))
            _step(report, action.name, "apply")(t, "failed", str(error))
            raise error from None
        _ledger_end(ledger, report, inv, "succeeded", counts)
        _step(report, action.name, "apply")(t)
        return counts
    finally:
        signal.signal(signal.SIGTERM, previous)
        locks.release()


def _ledger_end(ledger: gates.Ledger, report: Report, inv: Invocation, outcome: str, counts: dict[str, Any],
                error: str | None = None) -> None:
    """Complete the ledger row; when even fresh connections fail, say so — the action's own outcome stands."""
    failure = ledger.end(outcome, counts, error)
    if failure:
        report.kfm["ledger"] = f"end record not written ({failure}); the next run marks the row aborted"
        inv.out.warn(f"the audit ledger end record of run {inv.run_id} could not be written: {failure} — "
                     f"the action itself {outcome}")


def _verification(action: Action[Any], inv: Invocation) -> str:
    """What the plan says about the checks that will verify the action."""
    if not inv.verify:
        return "skipped (--no-verify)"
    if not action.verify_markers:
        return "none (no check covers what this action changes)"
    return f"pytest --pyargs opschecks -m {action.verify_markers!r}"


def _apply_error(action: Action[Any], exc: BaseException) -> KfmError:
    """What an apply that did not finish reports: ours as they are, a store's failure as a failed step."""
    if isinstance(exc, KeyboardInterrupt):
        return interrupted("interrupted")
    if isinstance(exc, ServiceError):
        return ActionFailed(action.name, "apply", exc.message)
    if isinstance(exc, KfmError):
        return exc
    log.get_logger().error("internal_error", action=action.name, error=f"{type(exc).__name__}: {exc}",
                           exc_info=True)
    return KfmError(f"{action.name} failed at step 'apply': internal error: {type(exc).__name__}: {exc}",
                    hint="a bug in kfm-ops; the log has the details (KFM_LOG_LEVEL=debug)")


def _require_same_deployment(action: Action[Any], hub: ServiceHub, control: PostgisStore) -> None:
    """Every store the action reads or writes belongs to the deployment the canonical database is stamped as."""
    canonical = control.identity()
    if canonical is None:
        if action.bootstraps_schema:
            return  # migrate --environment X: the run that stamps it
        marker = control.environment_marker()
        raise ActionRefused(f"{action.name} refused: the target database is marked '{marker}' but carries no "
                            "deployment id (an older kfm-ops marked it)",
                            hint=f"complete the stamp: kfm-maint migrate --environment {marker}")
    identity.require_same(hub, canonical, action.derived, action=action.name)


def _require_current_schema(action: Action[Any], conn: PostgisStore, settings: Settings) -> None:
    """Actions read the harness's own views: they refuse a kfm_ops schema older than this kfm-ops."""
    if action.bootstraps_schema or not conn.exists("kfm_ops.schema_migrations"):
        return  # a fresh database: _ensure_ops_schema says what to do
    pending = [p.name for p in migrate.pending(conn, settings.contracts_dir)]
    if pending:
        raise ActionFailed(action.name, "preflight", f"the kfm_ops schema is older than this kfm-ops: "
                           f"{len(pending)} migrations pending ({', '.join(pending)})",
                           hint="run `kfm-maint migrate` first (read its plan with --dry-run)")


def _ensure_ops_schema(action: Action[Any], conn: PostgisStore, settings: Settings) -> None:
    """The ledger lives in kfm_ops: schema-owning actions create it, others need it present."""
    if conn.exists("kfm_ops.audit_ledger"):
        return
    if action.bootstraps_schema:
        migrate.apply(conn, settings.contracts_dir)
        return
    raise ActionFailed(action.name, "preflight", "the kfm_ops schema (audit ledger) does not exist",
                       hint="run `kfm-maint migrate` first")
