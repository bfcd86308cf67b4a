"""kfm-maint report without a database: the comparison of runs, --since, the HTML page, the JUnit document."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from kfm_ops.errors import UsageError
from kfm_ops.history import Run, Stored
from kfm_ops.junit import junit_xml, write_junit
from maintenance.html_report import render, write_html
from maintenance.report import changes, parse_since, text

T0 = dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.UTC)


def run(n: int, **outcomes: str) -> Run:
    r = Run(f"00000000-0000-0000-0000-00000000000{n}", "production", "kfm-opschecks", "", T0 + dt.timedelta(hours=n),
            10.0, 1 if any(o in ("failed", "error") for o in outcomes.values()) else 0)
    for name, outcome in outcomes.items():
        message = f"{name} is broken <b>" if outcome in ("failed", "error", "known") else ""
        if name == "changed" and n == 3:
            message = "changed differently"
        r.results[f"opschecks/health/test_x.py::test_{name}"] = Stored(
            f"opschecks/health/test_x.py::test_{name}", outcome, "high" if name == "high" else "low", "health", 0.1,
            f"digest-{message}" if message else "", message, "do something" if message else "")
    return r


def ids(entries: list[dict]) -> list[str]:
    return [e["check"].rsplit("::test_", 1)[1] for e in entries]


def test_new_persisting_recovered_flapping_and_known() -> None:
    runs = [run(0, flap="failed", stay="failed", back="failed", new="passed", changed="failed", known="known"),
            run(1, flap="passed", stay="failed", back="failed", new="passed", changed="failed", known="known"),
            run(2, flap="failed", stay="failed", back="failed", new="passed", changed="failed", known="known",
                gone="failed"),
            run(3, flap="passed", stay="failed", back="passed", new="failed", high="error", changed="failed",
                known="known")]
    found = changes(runs[2], runs)
    assert ids(found["new"]) == ["high", "new"], "highest risk first, then by id"
    assert ids(found["persisting"]) == ["changed", "stay"]
    changed, stay = found["persisting"]
    assert changed["changed"] is True and stay["changed"] is False
    assert stay["failing_since"] == T0.isoformat(), "failing in every run of the window"
    assert ids(found["recovered"]) == ["back", "flap"] and found["recovered"][0]["was"] == "back is broken <b>"
    assert ids(found["flapping"]) == ["flap"] and found["flapping"][0]["changes"] == 3
    assert ids(found["known"]) == ["known"]
    assert "gone" not in ids(found["recovered"]), "a check not run now has not recovered"


def test_without_a_reference_every_failure_is_new() -> None:
    found = changes(None, [run(0, a="failed", b="passed")])
    assert ids(found["new"]) == ["a"] and not found["persisting"] and not found["recovered"]


def test_since_takes_dates_times_and_ages() -> None:
    now = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
    assert parse_since("36h", now) == now - dt.timedelta(hours=36)
    assert parse_since("7d", now) == now - dt.timedelta(days=7)
    assert parse_since("2w", now) == now - dt.timedelta(weeks=2)
    assert parse_since("2026-03-01", now) == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert parse_since("2026-03-01T06:00+02:00", now).utcoffset() == dt.timedelta(hours=2)
    with pytest.raises(UsageError, match="not a time"):
        parse_since("yesterday", now)


def _doc() -> dict:
    runs = [run(0, ok="passed", high="passed"), run(1, ok="passed", high="error", low="failed")]
    latest = runs[-1]
    return {"environment": "production", "suite": "kfm-opschecks", "since": None, "generated_at": "now",
            "latest": latest.as_dict() | {"counts": {"passed": 1, "failed": 1, "error": 1}},
            "reference": runs[0].as_dict(), "runs": [r.as_dict() for r in runs], **changes(runs[0], runs),
            "checks": [{"check": c, "risk": s.risk, "area": s.area, "outcome": s.outcome, "duration_s": s.duration,
                        "message": s.message, "hint": s.hint,
                        "trend": [r.results[c].outcome if c in r.results else None for r in runs]}
                       for c, s in sorted(latest.results.items())],
            "baseline": {"file": "b.toml", "entries": 2, "unused": [],
                         "expired": [{"check": "a.py::t", "reason": "r", "owner": "o", "expires": "2026-01-01"}]},
            "ledger_since": T0.isoformat(),
            "ledger": [{"started_at": T0, "action": "cache-rebuild", "outcome": "failed", "actor": "ana",
                        "duration_ms": 1200, "error": "cache-rebuild failed at step 'apply': <boom>"}]}


def test_the_page_is_self_contained_and_puts_failures_first(tmp_path: Path) -> None:
    page = render(_doc())
    assert not re.search(r"<(script|link|img|iframe|object)\b", page), "no external assets, no scripts"
    assert not re.search(r"(src|href)\s*=", page) and "url(" not in page and "@import" not in page
    assert "<b>" not in page.replace("<b>kfm-opschecks</b>", ""), "messages are escaped"
    assert "&lt;b&gt;" in page and "&lt;boom&gt;" in page
    order = [page.index(f'id="{s}"') for s in ("failing", "changes", "matrix", "checks", "baseline", "ledger")]
    assert order == sorted(order)
    first = re.search(r'<article class="failure risk-(\w+)" data-check="([^"]+)"', page)
    assert first and first.groups() == ("high", "opschecks/health/test_x.py::test_high"), "highest risk first"
    assert "2 failing checks" in page and 'class="badge new"' in page and "Hint: do something" in page
    assert page.count("<svg") == 2 + 3, "a trend strip per failure and per check"
    path = tmp_path / "out" / "report.html"
    write_html(path, _doc())
    assert path.read_text() == page
    assert "NEW FAILURES (2)" in text(_doc()) and "cache-rebuild  failed  by ana" in text(_doc())


def test_an_empty_history_renders_a_page_too() -> None:
    page = render({"environment": "dev", "latest": None, "message": "no check run is recorded for dev yet"})
    assert "no check run is recorded" in page and page.startswith("<!doctype html>")


def test_an_action_report_as_junit(tmp_path: Path) -> None:
    report = {"created": 1767225600.0, "duration": 4.2, "exitcode": 1,
              "environment": {"kfm_environment": "staging", "run_id": "r-1"},
              "tests": [
                  {"nodeid": "kfm-maint::cache-rebuild::plan", "outcome": "passed", "call": {"duration": 0.25}},
                  {"nodeid": "kfm-maint::cache-rebuild::verify", "outcome": "failed",
                   "call": {"duration": 1.0, "outcome": "failed", "longrepr": "opschecks/x.py::test_y\nmore"}},
                  {"nodeid": "opschecks/contract/test_cache_contract.py::test_keys", "outcome": "error",
                   "setup": {"duration": 0.1, "outcome": "failed", "longrepr": "E   RuntimeError: no"}},
                  {"nodeid": "opschecks/health/test_llm.py::test_llm", "outcome": "skipped",
                   "call": {"duration": 0, "outcome": "skipped", "longrepr": "not configured"}}]}
    path = tmp_path / "junit.xml"
    write_junit(path, report, suite="kfm-maint cache-rebuild")
    xml = JUnitXml.fromfile(str(path))
    (suite,) = list(xml)
    assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == (
        "kfm-maint cache-rebuild", 4, 1, 1, 1)
    cases = {(c.classname, c.name): c for c in suite}
    assert set(cases) == {("kfm-maint.cache-rebuild", "plan"), ("kfm-maint.cache-rebuild", "verify"),
                          ("opschecks.contract.test_cache_contract", "test_keys"),
                          ("opschecks.health.test_llm", "test_llm")}
    (failure,) = cases[("kfm-maint.cache-rebuild", "verify")].result
    assert isinstance(failure, Failure) and failure.message == "opschecks/x.py::test_y"
    assert isinstance(cases[("opschecks.contract.test_cache_contract", "test_keys")].result[0], Error)
    assert isinstance(cases[("opschecks.health.test_llm", "test_llm")].result[0], Skipped)
    assert cases[("kfm-maint.cache-rebuild", "plan")].time == 0.25
    props = {p.get("name"): p.get("value") for p in ET.fromstring(junit_xml(report, suite="s")).iter("property")}
    assert props == {"kfm_environment": "staging", "run_id": "r-1"}
