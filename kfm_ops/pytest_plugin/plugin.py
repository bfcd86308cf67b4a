"""The kfm-ops pytest plugin (entry point ``pytest11: kfm_ops``).

Options, markers, the report header with server versions, redaction of every
report, and the public fixtures from :mod:`.fixtures`. It serves the checks in
``opschecks`` and any checks folder of a deployment's own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any

import pytest

from kfm_ops import log, transport
from kfm_ops.baseline import load as load_baseline
from kfm_ops.errors import KfmError
from kfm_ops.hub import ServiceHub
from kfm_ops.partition import Partition
from kfm_ops.paths import writable
from kfm_ops.pytest_plugin import assertions
from kfm_ops.pytest_plugin.fixtures import (  # noqa: F401 — registered as fixtures by being here
    HUB_KEY,
    PARTITION_KEY,
    RUN_ID_KEY,
    SETTINGS_KEY,
    _digests_early,
    cache,
    canonical,
    canonical_digests,
    content_slice,
    graph,
    kfm_contract,
    kfm_hub,
    kfm_partition,
    kfm_run_id,
    kfm_settings,
    kfm_write_access,
    kfm_writer,
    llm,
    policy,
    postgis,
    search,
    sensitivity_grid,
)
from kfm_ops.pytest_plugin.privileges import write_capable
from kfm_ops.pytest_plugin.scheduled import AREAS, FIGURES_KEY, ScheduledRun, meta
from kfm_ops.redact import redact, redact_obj
from kfm_ops.settings import SERVICES, load_settings

RISK_TIERS = ("low", "medium", "high")
"""The risk tier of a check is its severity in reports and metrics."""
SCHEDULED_KEY = pytest.StashKey[ScheduledRun]()


# Marker signatures: calling one with a mark's arguments validates them.
def _risk(tier: str) -> None:
    if tier not in RISK_TIERS:
        raise ValueError(f"risk tier must be one of {', '.join(RISK_TIERS)}, got {tier!r}")


def _proves(check: str) -> None:
    if "::" not in check:
        raise ValueError(f"proves() takes a check node id like 'opschecks/x.py::test_y', got {check!r}")


def _covers(*elements: str) -> None:
    bad = [e for e in elements if not isinstance(e, str) or e.count(":") < 1 or not e.split(":", 1)[1]]
    if not elements or bad:
        raise ValueError(f"covers() takes contract element patterns like 'postgis:column:*', got {bad or 'none'}")


def _kfm_writable(*stores: str) -> None:
    unknown = [s for s in stores if s not in SERVICES]
    if unknown:
        raise ValueError(f"unknown store(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")


MARKERS: dict[str, tuple[str, Any]] = {
    "smoke": ("smoke: fast, cheap check run on every CI build and by `kfm-maint smoke`", None),
    "risk": ("risk(tier): cost and impact tier of a check: 'low', 'medium' or 'high'", _risk),
    "proves": ("proves(check_nodeid): this test injects the fault the named check targets", _proves),
    "covers": ("covers(*patterns): the contract elements this check verifies (kfm_ops.contracts.elements names, "
               "shell-style patterns)", _covers),
    "kfm_writable": ("kfm_writable(*stores): let this test open write-capable stores (kfm_writer), "
                     "only those named (all when none)", _kfm_writable),
    **{name: (f"{name}: touches the {name} service (added from the fixtures a test uses)", None)
       for name in SERVICES},
    **{area: (f"{area}: a {area} check (added from its folder, opschecks/{area}/)", None) for area in AREAS},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kfm-ops")
    group.addoption("--kfm-env-file", default=os.environ.get("KFM_ENV_FILE"),
                    help="settings file with KFM_* variables (env: KFM_ENV_FILE; default .env)")
    group.addoption("--kfm-require-all", action="store_true",
                    default=os.environ.get("KFM_REQUIRE_ALL_SERVICES", "").lower() in ("1", "true", "yes"),
                    help="fail, instead of skip, the checks of services that are not configured")
    group.addoption("--metrics-file", "--kfm-metrics-file", dest="kfm_metrics_file", default=None, metavar="PATH",
                    help="write the run's Prometheus metrics to PATH (a node_exporter textfile, written atomically); "
                         "KFM_METRICS__PUSHGATEWAY_URL pushes them too")
    group.addoption("--kfm-partition", default=None, metavar="i/N",
                    help="compare only partition i (0-based) of N of the buckets in the cross-store consistency "
                         "checks: N runs, one per partition, cover every record once")
    group.addoption("--kfm-baseline", default=None, metavar="FILE",
                    help="known failures (TOML) reported as xfail until their expiry "
                         "(default: KFM_CHECKS__BASELINE_FILE)")


def pytest_configure(config: pytest.Config) -> None:
    for help_text, _signature in MARKERS.values():
        config.addinivalue_line("markers", help_text)
    overrides = {"require_all_services": True} if config.getoption("kfm_require_all") else {}
    run_id = os.environ.get("KFM_RUN_ID") or log.new_run_id()
    try:  # bad settings or output paths: a usage error (exit 4) before anything connects
        settings = load_settings(config.getoption("kfm_env_file"), **overrides)
        if config.getoption("json_report", False) and not hasattr(config, "workerinput"):
            writable(config.getoption("json_report_file"), "--json-report-file")
        log.configure(run_id=run_id, environment=settings.environment_label, component="opschecks",
                      level=settings.log_level, log_file=settings.log_file)
    except KfmError as exc:
        raise pytest.UsageError(str(exc)) from None
    os.environ["KFM_RUN_ID"] = run_id  # xdist workers inherit the controller's run_id
    assertions.configure(first_n=settings.checks.first_n)
    try:
        baseline = load_baseline(config.getoption("kfm_baseline") or settings.checks.baseline_file)
        part = config.getoption("kfm_partition")
        config.stash[PARTITION_KEY] = Partition.parse(part) if part else Partition.whole()
    except KfmError as exc:
        raise pytest.UsageError(str(exc).replace("--partition", "--kfm-partition")) from None
    config.stash[SETTINGS_KEY] = settings
    config.stash[RUN_ID_KEY] = run_id
    config.stash[HUB_KEY] = ServiceHub(settings)
    _SESSION_HUB[:] = [config.stash[HUB_KEY]]
    scheduled = ScheduledRun(config, settings, baseline, config.stash[HUB_KEY])
    config.stash[SCHEDULED_KEY] = scheduled
    _SESSION_SCHEDULED[:] = [scheduled]
    config.pluginmanager.register(scheduled, "kfm-ops-scheduled")
    transport.log_waivers(settings)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STARTED] = time.monotonic()
    _session_logger(session.config).info("checks.start", configured=session.config.stash[SETTINGS_KEY].configured())


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    counts = {key: len(reports) for key, reports in terminalreporter.stats.items()
              if key in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}
    _session_logger(config).info("checks.end", exit_status=int(exitstatus), **counts,
                                 duration_s=round(time.monotonic() - config.stash.get(_STARTED, time.monotonic()), 3),
                                 unreachable=config.stash[HUB_KEY].unavailable() if HUB_KEY in config.stash else [])


_STARTED = pytest.StashKey[float]()


def _session_logger(config: pytest.Config) -> Any:
    """This session's own run_id and component, whatever an in-process kfm-maint bound since."""
    return log.get_logger().bind(run_id=config.stash[RUN_ID_KEY], component="opschecks")


def pytest_unconfigure(config: pytest.Config) -> None:
    if HUB_KEY in config.stash:
        config.stash[HUB_KEY].close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS_KEY]
    hub = config.stash[HUB_KEY]
    lines = [f"kfm-ops: environment={settings.environment} run_id={config.stash[RUN_ID_KEY]}"]
    lines += [f"  WARNING {transport.waiver_line(t)}" for t in transport.waived(settings)]  # no probe needed
    if config.getoption("collectonly"):
        return [*lines, "  services: not probed (--collect-only)"]
    lines += ["  " + line for line in hub.status_lines()]
    for problem in write_capable(hub, [name for name in SERVICES if hub.answered(name)]):
        log.get_logger().warning("privilege.write_capable_check_credentials", problem=problem)
        lines.append(f"  WARNING {problem}")
    return lines + config.stash[SCHEDULED_KEY].header_lines()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    errors = []
    for item in items:
        for mark in item.iter_markers():
            signature = MARKERS.get(mark.name, (None, None))[1]
            if signature is not None:
                try:
                    signature(*mark.args, **mark.kwargs)
                except (TypeError, ValueError) as exc:
                    errors.append(f"{item.nodeid}: @pytest.mark.{mark.name}: {exc}")
        for name in SERVICES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(name)
        folder = item.path.parent.name
        if folder in AREAS:
            item.add_marker(folder)
    if errors:
        raise pytest.UsageError("invalid markers:\n  " + "\n  ".join(errors))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A store error in the middle of a check (the service went away, answered an error) fails it in one line."""
    item.stash[FIGURES_KEY] = []
    assertions.collecting(item.stash[FIGURES_KEY])
    try:
        return (yield)
    except KfmError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        assertions.collecting(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    report.kfm = meta(item)  # travels with xdist; the JSON report's metadata and the metrics read it
    # Failure text and captured output pass through the redactor before any reporter sees them.
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        report.longrepr = redact(str(report.longrepr))
    report.sections = [(title, redact(body)) for title, body in report.sections]
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_json_modifyreport(json_report: dict[str, Any]) -> None:
    redacted = redact_obj(json_report)
    json_report.clear()
    json_report.update(redacted)
    hub = _SESSION_HUB[0] if _SESSION_HUB else None
    json_report["kfm"] = {"run_id": os.environ.get("KFM_RUN_ID"), "command": "check",
                          "unreachable": hub.unavailable() if hub else [],
                          "insecure_transport_allowed": [str(t) for t in transport.waived(hub.settings)] if hub else []}
    if hub is not None and _SESSION_SCHEDULED:
        json_report["kfm"].update(environment=hub.settings.environment, services=hub.status(warm=False),
                                  baseline=_SESSION_SCHEDULED[0].baseline_summary())


@pytest.hookimpl(optionalhook=True)
def pytest_json_runtest_metadata(item: pytest.Item, call: pytest.CallInfo[None]) -> dict[str, Any]:
    """Each test's ``kfm`` entry in the JSON report: check id, risk tier, area, figures, known failure."""
    return {"kfm": meta(item)}


# pytest-json-report's hooks get no config: the session's hub and scheduled run are kept here for them.
_SESSION_HUB: list[ServiceHub] = []
_SESSION_SCHEDULED: list[ScheduledRun] = []
