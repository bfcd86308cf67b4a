"""Prometheus metrics of check runs and actions (``prometheus_client``), and their two outputs.

A check run and an action each become one registry, built from the same data their JSON
report holds. The outputs:

- a node_exporter textfile (``--metrics-file PATH``), written atomically (a temporary file
  renamed over the old one, so the collector never reads half a file);
- a push to a Prometheus Pushgateway (``KFM_METRICS__PUSHGATEWAY_URL``): a PUT that replaces
  the group's metrics. Check runs are grouped by ``job`` (``KFM_METRICS__JOB``, default
  ``kfm-opschecks``) and ``environment``; actions by ``job="kfm-maint"``, ``environment``
  and ``action``.

Every series carries ``environment``, and ``suite`` (check runs) or ``action`` (actions),
so the alert rules (``deploy/prometheus/kfm-ops.rules.yml``) read both routes alike. The
risk tier is a check's severity: the ``risk`` label. ``docs/metrics.md`` lists the series.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile
from prometheus_client.exposition import basic_auth_handler, default_handler

from kfm_ops.redact import redact
from kfm_ops.results import OUTCOMES, CheckResult, counts

ACTION_JOB = "kfm-maint"
ACTION_OUTCOMES = ("succeeded", "verification_failed", "failed", "aborted", "refused")
NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass
class CheckRun:
    """A finished check run: what its metrics say besides the checks themselves."""

    environment: str
    suite: str
    started: float  # epoch seconds
    duration: float
    exit_code: int
    services: Sequence[Mapping[str, Any]] = ()  # {service, configured, up, version}
    last_success: Mapping[str, float] = field(default_factory=dict)  # check id → epoch of its last pass
    run_last_success: float | None = None  # the last run that ended with exit 0, from the history
    baseline: Mapping[str, Any] | None = None  # baseline.summary(): entries, expired, unused
    history_recorded: bool | None = None  # None: no history asked for

    @property
    def ended(self) -> float:
        return self.started + self.duration


class _Metrics:
    """Gauges that all carry the same constant labels (environment, suite or action)."""

    def __init__(self, **constant: str) -> None:
        self.registry = CollectorRegistry()
        self.constant = constant
        self._gauges: dict[str, tuple[Gauge, tuple[str, ...]]] = {}

    def set(self, name: str, doc: str, value: float, **labels: str) -> None:
        names = (*self.constant, *labels)
        if name not in self._gauges:
            self._gauges[name] = (Gauge(name, doc, names, registry=self.registry), names)
        gauge, known = self._gauges[name]
        if known != names:
            return  # a figure reported with other labels than before: keep the first shape
        gauge.labels(**self.constant, **labels).set(value)


def check_registry(results: Sequence[CheckResult], run: CheckRun) -> CollectorRegistry:
    """The metrics of one check run."""
    m = _Metrics(environment=run.environment, suite=run.suite)
    for r in results:
        who = {"check": r.check, "area": r.area, "risk": r.risk}
        for outcome in OUTCOMES:
            m.set("kfm_check_outcome", "1 for the check's outcome in the last run (known: a baseline entry), "
                  "0 for the others", float(r.outcome == outcome), **who, outcome=outcome)
        m.set("kfm_check_duration_seconds", "Duration of the check in the last run", r.duration, **who)
        last = run.ended if r.outcome == "passed" else run.last_success.get(r.check)
        if last is not None:
            m.set("kfm_check_last_success_timestamp_seconds", "When the check last passed", last, **who)
        for figure in r.figures:
            if NAME.match(figure.name):
                m.set(f"kfm_{figure.name}", f"Figure {figure.name} measured by a check", figure.value,
                      **figure.labels)
    for outcome, number in counts(list(results)).items():
        m.set("kfm_checks", "Checks of the last run by outcome", number, outcome=outcome)
    m.set("kfm_run_timestamp_seconds", "When the last run ended", run.ended)
    m.set("kfm_run_duration_seconds", "Duration of the last run", run.duration)
    m.set("kfm_run_exit_code", "Exit code of the last run (README: exit codes)", run.exit_code)
    last_ok = run.ended if run.exit_code == 0 else run.run_last_success
    if last_ok is not None:
        m.set("kfm_run_last_success_timestamp_seconds", "When a run last ended with exit 0", last_ok)
    if run.history_recorded is not None:
        m.set("kfm_run_history_recorded", "1 if the run was recorded in the history", float(run.history_recorded))
    for s in run.services:
        if not s.get("configured") or s.get("up") is None:  # not configured, or not used by this run
            continue
        m.set("kfm_service_up", "1 if the service answered during the run", float(bool(s.get("up"))),
              service=str(s["service"]))
        if s.get("up"):
            m.set("kfm_service_info", "The server version of a reachable service", 1.0, service=str(s["service"]),
                  version=str(s.get("version") or ""))
    if run.baseline is not None:
        active = int(run.baseline.get("entries", 0)) - len(run.baseline.get("expired", []))
        for state, number in (("active", active), ("expired", len(run.baseline.get("expired", []))),
                              ("unused", len(run.baseline.get("unused", [])))):
            m.set("kfm_baseline_entries", "Baseline entries (known failures) by state", number, state=state)
    return m.registry


def action_outcome(exit_code: int, interrupted: bool = False) -> str:
    """What became of an action, from its exit code (README: exit codes)."""
    if exit_code == 0:
        return "succeeded"
    if exit_code == 1:
        return "verification_failed"
    if exit_code == 3:
        return "refused"
    return "aborted" if interrupted else "failed"


def _numbers(prefix: str, value: Any) -> list[tuple[str, float]]:
    """The numeric leaves of an action's counts, nested names joined with dots."""
    if isinstance(value, bool):
        return [(prefix, float(value))]
    if isinstance(value, int | float):
        return [(prefix, float(value))]
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _numbers(f"{prefix}.{k}" if prefix else str(k), v)]
    return []


def action_registry(report: Mapping[str, Any], *, last_success: float | None = None) -> CollectorRegistry:
    """The metrics of one action run, from its JSON report (``Report.to_dict``)."""
    kfm = report.get("kfm", {})
    action = str(kfm.get("command", "?"))
    m = _Metrics(environment=str(kfm.get("environment", "")), action=action)
    outcome = str(kfm.get("outcome") or action_outcome(int(report.get("exitcode", 70))))
    for name in ACTION_OUTCOMES:
        m.set("kfm_action_outcome", "1 for the outcome of the action's last run, 0 for the others",
              float(outcome == name), outcome=name)
    ended = float(report.get("created", time.time())) + float(report.get("duration", 0.0))
    m.set("kfm_action_timestamp_seconds", "When the action's last run ended", ended)
    m.set("kfm_action_duration_seconds", "Duration of the action's last run", float(kfm.get("duration_s", 0.0)))
    m.set("kfm_action_exit_code", "Exit code of the action's last run", float(report.get("exitcode", 70)))
    last = ended if outcome == "succeeded" else last_success
    if last is not None:
        m.set("kfm_action_last_success_timestamp_seconds", "When the action last succeeded", last)
    for test in report.get("tests", []):
        parts = str(test.get("nodeid", "")).split("::")
        if parts[0] == "kfm-maint" and len(parts) == 3:
            call = test.get("call") or {}
            m.set("kfm_action_step_duration_seconds", "Duration of each step of the action's last run",
                  float(call.get("duration", 0.0)), step=parts[2])
    for name, number in _numbers("", kfm.get("counts") or {}):
        m.set("kfm_action_count", "What the action's last run counted (written, deleted, unchanged …)", number,
              count=name)
    verification = kfm.get("verification") or {}
    if verification:
        m.set("kfm_action_verification_failed", "Checks that failed the action's verification",
              float(len(verification.get("failed", []))))
    return m.registry


def write_textfile(registry: CollectorRegistry, path: Path) -> None:
    """The node_exporter textfile: written next to ``path`` and renamed over it (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def push(registry: CollectorRegistry, url: str, *, job: str, grouping: Mapping[str, str], timeout: float) -> None:
    """PUT the registry to the Pushgateway at ``url`` (replacing the group); basic auth from the URL's user info.

    Raises :class:`PushFailed` with the reason.
    """
    parts = urlsplit(url)
    handler = default_handler
    if parts.username is not None:
        user, password = parts.username, parts.password or ""
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

        def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                    data: bytes) -> Any:
            return basic_auth_handler(url, method, timeout, headers, data, user, password)
    try:
        push_to_gateway(url, job=job, registry=registry, grouping_key=dict(grouping), timeout=timeout,
                        handler=handler)
    except Exception as exc:  # noqa: BLE001 — urllib raises many kinds; the caller reports one line
        raise PushFailed(redact(f"pushing metrics to {url} failed: {type(exc).__name__}: {exc}")) from None


class PushFailed(Exception):
    """The Pushgateway refused or could not be reached (the run's result stands; the caller warns)."""
