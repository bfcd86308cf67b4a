"""Reading check results from a JSON report, and the known-failure baseline (no services needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kfm_ops.baseline import Baseline, Known, load
from kfm_ops.errors import UsageError
from kfm_ops.results import check_id, counts, from_report, from_test, message_of, split_hint


def _test(nodeid: str, outcome: str, longrepr: str | None = None, *, phase: str = "call", **kfm: object) -> dict:
    stages = {"setup": {"duration": 0.01, "outcome": "passed"}, "call": {"duration": 0.5, "outcome": "passed"},
              "teardown": {"duration": 0.0, "outcome": "passed"}}
    if longrepr is not None:
        stages[phase] = {"duration": 0.1, "outcome": "failed" if outcome != "xfailed" else "skipped",
                         "longrepr": longrepr}
    return {"nodeid": nodeid, "outcome": outcome, **stages, "metadata": {"kfm": kfm} if kfm else {}}


def test_a_failure_message_splits_into_message_and_hint() -> None:
    test = _test("opschecks/health/test_x.py::test_y", "failed",
                 "search is red [where: 127.0.0.1:9200] — offending ids (1: a) — hint: restart the node",
                 risk="high", area="health", figures=[{"name": "consistency_items", "value": 3,
                                                       "labels": {"store": "search", "kind": "missing"}}])
    r = from_test(test)
    assert (r.check, r.outcome, r.risk, r.area) == ("opschecks/health/test_x.py::test_y", "failed", "high", "health")
    assert r.message == "search is red [where: 127.0.0.1:9200] — offending ids (1: a)"
    assert r.hint == "restart the node"
    assert r.failing and r.duration == pytest.approx(0.11)
    assert r.figures[0].name == "consistency_items" and r.figures[0].value == 3.0
    assert r.figures[0].labels == {"store": "search", "kind": "missing"}
    assert len(r.digest) == 16 and r.digest == from_test(test).digest


def test_outcomes_map_to_ours() -> None:
    known = from_test(_test("opschecks/a.py::t", "xfailed", "broken thing — hint: z", known={"owner": "ops"}))
    assert known.outcome == "known" and known.message == "broken thing" and known.known == {"owner": "ops"}
    error = from_test(_test("opschecks/a.py::t", "error", "def f():\n>   raise X\nE   RuntimeError: setup broke\n",
                            phase="setup"))
    assert error.outcome == "error" and error.message == "RuntimeError: setup broke"
    skipped = from_test(_test("opschecks/a.py::t", "skipped", "('/x/a.py', 18, 'Skipped: graph is not configured')"))
    assert skipped.outcome == "skipped" and skipped.message == "graph is not configured"
    passed = from_test(_test("opschecks/a.py::t", "passed"))
    assert passed.message == "" and passed.digest == "" and not passed.failing


def test_a_report_yields_only_checks_and_counts_every_outcome() -> None:
    report = {"tests": [_test("opschecks/a.py::t1", "passed"), _test("opschecks/a.py::t2", "failed", "x"),
                        {"nodeid": "kfm-maint::cache-rebuild::plan", "outcome": "passed"}]}
    results = from_report(report)
    assert [r.check for r in results] == ["opschecks/a.py::t1", "opschecks/a.py::t2"]
    assert counts(results) == {"passed": 1, "failed": 1, "error": 0, "skipped": 0, "known": 0, "xpassed": 0}


def test_check_ids_do_not_depend_on_where_the_package_is_installed() -> None:
    assert check_id("../../site-packages/opschecks/health/test_x.py::test_y") == "opschecks/health/test_x.py::test_y"
    assert check_id("opschecks/health/test_x.py::test_y") == "opschecks/health/test_x.py::test_y"
    assert check_id("mychecks/test_z.py::test_w") == "mychecks/test_z.py::test_w"
    assert split_hint("no hint here") == ("no hint here", "")
    assert len(message_of("x" * 5000)) == 2000


# --------------------------------------------------------------------------- the baseline
TODAY = dt.date(2026, 3, 10)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "baseline.toml"
    path.write_text(text)
    return path


def test_baseline_entries_are_known_until_the_end_of_their_expiry_day(tmp_path: Path) -> None:
    baseline = load(_write(tmp_path, """
[[known]]
check = "opschecks/health/test_search.py::test_search_cluster_health"
reason = "single-node staging cluster stays yellow (OPS-123)"
owner = "search-team"
expires = 2026-03-10

[[known]]
check = "health/test_graph.py::test_graph_reachable"
reason = "moved"
owner = "graph-team"
expires = "2026-03-09"
"""))
    full = "opschecks/health/test_search.py::test_search_cluster_health"
    assert baseline.active(full, TODAY) is not None
    assert baseline.active(full, TODAY + dt.timedelta(days=1)) is None, "the day after expiry it fails again"
    assert baseline.active("opschecks/health/test_graph.py::test_graph_reachable", TODAY) is None
    assert [e.check for e in baseline.expired(TODAY)] == ["health/test_graph.py::test_graph_reachable"]
    assert baseline.active("opschecks/health/test_graph.py::test_graph_reachable", TODAY - dt.timedelta(days=1))
    summary = baseline.summary([full], TODAY)
    assert summary["entries"] == 2 and [e["check"] for e in summary["unused"]] == [
        "health/test_graph.py::test_graph_reachable"]
    assert summary["expired"][0]["expires"] == "2026-03-09"


@pytest.mark.parametrize(("text", "words"), [
    ('[[known]]\ncheck = "a.py::t"\nreason = "r"\nowner = "o"\n', "missing expires"),
    ('[[known]]\ncheck = "a.py::t"\nreason = "r"\nowner = "o"\nexpires = "soon"\n', "expires must be a date"),
    ('[[known]]\ncheck = "a.py::t"\nreason = "r"\nowner = "o"\nexpires = 2026-01-01\nticket = 1\n', "unknown ticket"),
    ('[[known]]\ncheck = "test_x"\nreason = "r"\nowner = "o"\nexpires = 2026-01-01\n', "check must be a check id"),
    ('[[known]]\ncheck = "a.py::t"\nreason = "r"\nowner = "o"\nexpires = 2026-01-01\n' * 2, "listed twice"),
    ('[known]\ncheck = 1\n', "array of tables"),
    ('[[knwon]]\n', "unknown key"),
    ('check = [\n', "not valid TOML"),
])
def test_a_bad_baseline_is_a_usage_error_naming_the_problem(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        load(_write(tmp_path, text))


def test_no_baseline_file_is_an_empty_baseline_and_a_missing_one_an_error(tmp_path: Path) -> None:
    assert load(None) == Baseline(None)
    with pytest.raises(UsageError, match="not found"):
        load(tmp_path / "nope.toml")
    assert Known("a.py::t", "r", "o", TODAY).matches("opschecks/a.py::t")
    assert not Known("a.py::t", "r", "o", TODAY).matches("opschecks/xa.py::t")
