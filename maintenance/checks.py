"""``kfm-maint check`` and ``smoke``: the opschecks in a pytest process, then what a scheduled run leaves.

The check session itself stays read-only by construction (the reader role, read-only
stores). When pytest has ended, from its JSON report:

1. the **history**: the run and each check's result go into ``kfm_ops.check_runs`` and
   ``kfm_ops.check_results`` through a write connection (``KFM_HISTORY__DSN``, a narrow
   role, or the owner DSN ``KFM_POSTGIS__WRITE_DSN``), in one transaction with the retention;
2. the **metrics**: a node_exporter textfile (``--metrics-file``) and a Pushgateway push
   (``KFM_METRICS__PUSHGATEWAY_URL``), each check's last success read back from the history;
3. **JUnit**: ``--junit-xml PATH`` is pytest's own ``--junitxml``.

A failure to record or push is a warning: the exit code stays the checks' (README: exit codes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfm_ops import history, log
from kfm_ops.checkrun import installed_checks, run_pytest
from kfm_ops.errors import ExitCode, KfmError
from kfm_ops.hub import ServiceHub
from kfm_ops.metrics import CheckRun, PushFailed, check_registry, push, write_textfile
from kfm_ops.results import CheckResult, counts, from_report
from kfm_ops.settings import Settings

SMOKE_SUITE = "kfm-smoke"
_EXIT = {0: ExitCode.OK, 1: ExitCode.CHECKS_FAILED, 2: ExitCode.INTERNAL, 3: ExitCode.INTERNAL,
         4: ExitCode.USAGE, 5: ExitCode.USAGE}


def warn(text: str) -> None:
    print(f"kfm-maint: warning: {text}", file=sys.stderr, flush=True)


def run_checks(pytest_args: list[str], opts: dict[str, Any], run_id: str, settings: Settings, *, suite: str) -> int:
    """Run the checks, record the run, write and push its metrics; return the documented exit code."""
    args = [a for a in pytest_args if a != "--"]
    selection = " ".join(args)
    # KFM_ENV_FILE is already in the environment, made absolute by the CLI (the run starts elsewhere).
    env = {"KFM_RUN_ID": run_id, "KFM_METRICS__PUSHGATEWAY_URL": ""}  # this process pushes, after the history
    junit = [f"--junitxml={Path(opts['junit_xml']).resolve()}"] if opts.get("junit_xml") else []
    started = time.time()
    # Always a report: it is how an unreachable service (exit 4) is told from a failed check (1).
    run = run_pytest(installed_checks(*args, *junit), env=env, capture=False, isolated=True,
                     report_file=Path(opts["json_report_file"]) if opts["json_report_file"] else None)
    report = run.report or {}
    unreachable = report.get("kfm", {}).get("unreachable")
    code = _EXIT.get(run.returncode, ExitCode.INTERNAL)
    if run.returncode == 5:
        print("kfm-maint: error: no checks were selected — check the -m / -k expression", file=sys.stderr)
    if code == ExitCode.CHECKS_FAILED and unreachable:
        code = ExitCode.UNREACHABLE
    if report:
        duration = float(report.get("duration", 0.0))
        started = float(report.get("created", started + duration)) - duration
    else:
        duration = time.time() - started
    results = from_report(report)
    record = Recorded(settings, run_id, suite)
    if results or report:
        record.write(selection=selection, started=started, duration=duration, exit_code=int(code), results=results)
    if opts.get("metrics_file") or settings.metrics.pushgateway_url:
        last, run_ok = record.last_success()
        kfm = report.get("kfm", {})
        metrics = CheckRun(environment=settings.environment_label, suite=suite, started=started, duration=duration,
                           exit_code=int(code), services=kfm.get("services", []), last_success=last,
                           run_last_success=run_ok, baseline=kfm.get("baseline") if settings.checks.baseline_file
                           else None, history_recorded=record.recorded)
        publish_metrics(check_registry(results, metrics), settings, opts.get("metrics_file"), job=suite,
                        grouping={"environment": settings.environment_label})
    record.close()
    return int(code)


class Recorded:
    """The history side of one run: the write connection, opened once, and whether the run got in."""

    def __init__(self, settings: Settings, run_id: str, suite: str) -> None:
        self.settings = settings
        self.run_id = run_id
        self.suite = suite
        self.recorded: bool | None = None
        self.hub: ServiceHub | None = None
        self.conn: Any = None
        if settings.postgis is None or not (settings.history.dsn or settings.postgis.write_dsn):
            print("kfm-maint: history: not recorded (no write DSN: set KFM_HISTORY__DSN or KFM_POSTGIS__WRITE_DSN)",
                  flush=True)
            return
        try:
            self.hub = history.writer(settings, f"kfm-maint/{run_id}/history")
            self.conn = self.hub.postgis(write=True)
            if not self.conn.exists(history.RESULTS):
                warn("the check history is not recorded: kfm_ops.check_runs does not exist "
                     "(run `kfm-maint migrate`)")
                self.close()
        except KfmError as exc:
            warn(f"the check history is not recorded: {exc}")
            self.close()
        self.recorded = False

    def write(self, *, selection: str, started: float, duration: float, exit_code: int,
              results: list[CheckResult]) -> None:
        if self.conn is None:
            return
        try:
            deleted = history.record(
                self.conn, run_id=self.run_id, environment=self.settings.environment_label, suite=self.suite,
                selection=selection, started=started, duration=duration, exit_code=exit_code, results=results,
                counts=counts(results), retention_days=self.settings.history.retention_days,
                max_runs=self.settings.history.max_runs)
        except KfmError as exc:
            warn(f"the check history is not recorded: {exc}")
            return
        self.recorded = True
        log.get_logger().info("history.recorded", suite=self.suite, checks=len(results), deleted_runs=deleted)
        print(f"kfm-maint: history: run {self.run_id} recorded ({len(results)} checks, suite {self.suite}); "
              f"`kfm-maint report` compares it with the previous run", flush=True)

    def last_success(self) -> tuple[dict[str, float], float | None]:
        if self.conn is None:
            return {}, None
        try:
            return history.last_success(self.conn, self.settings.environment_label, self.suite)
        except KfmError as exc:
            warn(f"the last successes could not be read from the history: {exc}")
            return {}, None

    def close(self) -> None:
        if self.hub is not None:
            self.hub.close()
        self.hub = self.conn = None


def publish_metrics(registry: Any, settings: Settings, metrics_file: str | None, *, job: str,
                    grouping: dict[str, str], say: Callable[[str], None] = print) -> None:
    """The textfile and the push of one run's metrics; a failure is a warning, never a changed exit code."""
    if metrics_file:
        try:
            write_textfile(registry, Path(metrics_file))
            say(f"kfm-maint: metrics: {metrics_file}")
        except OSError as exc:
            warn(f"the metrics file {metrics_file} could not be written: {exc}")
    url = settings.metrics.pushgateway_url
    if url:
        try:
            push(registry, url, job=job, grouping=grouping, timeout=settings.metrics.timeout)
            say(f"kfm-maint: metrics: pushed to {url} (job {job}, " + ", ".join(f"{k} {v}" for k, v in grouping.items())
                + ")")
        except PushFailed as exc:
            log.get_logger().warning("metrics.push_failed", error=str(exc))
            warn(str(exc))
