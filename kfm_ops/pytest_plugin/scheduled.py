"""What a scheduled check run needs from the plugin: known failures, each check's severity, metrics.

:class:`ScheduledRun` is registered by the plugin at configure time. It

- marks the checks listed in the baseline (``KFM_CHECKS__BASELINE_FILE`` / ``--kfm-baseline``)
  as known failures (xfail, strict) until their expiry, and reports expired and unused entries;
- gives every test report a ``kfm`` entry (check id, risk tier, area, figures, the baseline
  entry) that travels with xdist and lands in the JSON report's metadata;
- keeps each check's outcome as pytest-json-report does, and at the end of the session
  writes the run's metrics (``--metrics-file``) and pushes them (``KFM_METRICS__PUSHGATEWAY_URL``).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from kfm_ops import log
from kfm_ops.baseline import Baseline
from kfm_ops.errors import KfmError
from kfm_ops.hub import ServiceHub
from kfm_ops.metrics import CheckRun, PushFailed, check_registry, push, write_textfile
from kfm_ops.results import check_id, from_test
from kfm_ops.settings import Settings

AREAS = ("health", "contract", "governance", "consistency")
FIGURES_KEY = pytest.StashKey[list[dict[str, Any]]]()
KNOWN_KEY = pytest.StashKey[dict[str, str]]()


def meta(item: pytest.Item) -> dict[str, Any]:
    """The ``kfm`` entry of a test's reports: id, risk tier (its severity), area, figures, known failure."""
    risk = item.get_closest_marker("risk")
    names = {m.name for m in item.iter_markers()}
    none: list[dict[str, Any]] = []
    figures = item.stash.get(FIGURES_KEY, none)
    found: dict[str, Any] = {
        "check": check_id(item.nodeid),
        "risk": str(risk.args[0]) if risk is not None and risk.args else "",
        "area": next((a for a in AREAS if a in names), ""),
        "figures": list(figures),
    }
    if KNOWN_KEY in item.stash:
        found["known"] = item.stash[KNOWN_KEY]
    return found


class ScheduledRun:
    def __init__(self, config: pytest.Config, settings: Settings, baseline: Baseline, hub: ServiceHub) -> None:
        self.config = config
        self.settings = settings
        self.baseline = baseline
        self.hub = hub
        self.today = dt.date.today()
        self.collected: list[str] = []
        self.tests: dict[str, dict[str, Any]] = {}
        self.started = time.time()
        self.notes: list[str] = []
        self.metrics_file = config.getoption("kfm_metrics_file")
        self.is_worker = hasattr(config, "workerinput")

    # --- the baseline
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Before -m/-k deselect anything: every collected check counts as a use of its entry."""
        self.collected = [check_id(item.nodeid) for item in items]
        for item in items:
            known = self.baseline.active(check_id(item.nodeid), self.today)
            if known is None:
                continue
            item.stash[KNOWN_KEY] = known.as_dict()
            item.add_marker(pytest.mark.xfail(
                reason=f"known failure (baseline): {known.reason} — owner {known.owner}, until {known.expires}",
                strict=True))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.collected = [check_id(nodeid) for nodeid in ids]

    def baseline_summary(self) -> dict[str, Any]:
        return self.baseline.summary(self.collected, self.today)

    def header_lines(self) -> list[str]:
        if self.baseline.path is None:
            return []
        expired = self.baseline.expired(self.today)
        line = f"  baseline: {len(self.baseline.entries)} known failures in {self.baseline.path}"
        return [line] + [f"  EXPIRED baseline entry {e.check} (owner {e.owner}, expired {e.expires}): it fails again"
                         for e in expired]

    # --- outcomes (the controller's view, as pytest-json-report keeps it)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker:
            return
        category = self.config.hook.pytest_report_teststatus(report=report, config=self.config)[0]
        entry = self.tests.setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "passed"})
        kfm = getattr(report, "kfm", None)
        if kfm is not None:
            entry["metadata"] = {"kfm": kfm}
        if category not in ("passed", ""):
            entry["outcome"] = category
        entry[report.when] = {"duration": report.duration, "outcome": report.outcome,
                              "longrepr": str(report.longrepr) if report.longrepr else None}

    # --- metrics
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker or not (self.metrics_file or self.settings.metrics.pushgateway_url):
            return
        results = [from_test(t) for t in self.tests.values()]
        checks, run_ok = self._last_success()
        run = CheckRun(environment=self.settings.environment_label, suite=self.settings.metrics.job,
                       started=self.started, duration=time.time() - self.started, exit_code=int(exitstatus),
                       services=self.hub.status(warm=False), last_success=checks, run_last_success=run_ok,
                       baseline=self.baseline_summary() if self.baseline.path else None)
        registry = check_registry(results, run)
        if self.metrics_file:
            write_textfile(registry, self.metrics_file)
            self.notes.append(f"metrics: {self.metrics_file}")
        url = self.settings.metrics.pushgateway_url
        if url:
            try:
                push(registry, url, job=run.suite, grouping={"environment": run.environment},
                     timeout=self.settings.metrics.timeout)
                self.notes.append(f"metrics pushed to {url} (job {run.suite}, environment {run.environment})")
            except PushFailed as exc:
                log.get_logger().warning("metrics.push_failed", error=str(exc))
                self.notes.append(f"WARNING {exc}")

    def _last_success(self) -> tuple[dict[str, float], float | None]:
        """From the history, when readable (the reader may SELECT kfm_ops); else nothing."""
        if not self.hub.configured("postgis"):
            return {}, None
        from kfm_ops import history

        try:
            conn = self.hub.postgis()
            if not conn.exists(history.RESULTS):
                return {}, None
            return history.last_success(conn, self.settings.environment_label, self.settings.metrics.job)
        except KfmError as exc:
            log.get_logger().info("metrics.no_history", reason=str(exc))
            return {}, None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        summary = self.baseline_summary() if self.baseline.path else {"expired": [], "unused": []}
        lines = [f"EXPIRED baseline entry {e['check']} (owner {e['owner']}, expired {e['expires']})"
                 for e in summary["expired"]]
        lines += [f"UNUSED baseline entry {e['check']} (owner {e['owner']}): no such check" for e in summary["unused"]]
        if lines or self.notes:
            terminalreporter.write_sep("-", "kfm-ops")
            for line in lines + self.notes:
                terminalreporter.write_line(line)
