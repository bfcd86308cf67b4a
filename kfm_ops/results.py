"""One check's result, read from a JSON report (pytest-json-report's schema) the same way everywhere.

The metrics, the history and ``kfm-maint report`` all read check runs through
:func:`from_report`, so they agree on what a check's id, outcome, severity and
message are. The plugin adds a ``kfm`` entry to each test's metadata (risk tier,
area, figures, the baseline entry that made it a known failure); a report of other
checks simply lacks those.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("passed", "failed", "error", "skipped", "known", "xpassed")
"""A check's outcome: ``known`` is a failure listed in the baseline (pytest's xfailed)."""
FAILING = frozenset({"failed", "error"})
RISK_TIERS = ("high", "medium", "low")
"""Severity, highest first: the risk tier is a failure's severity in reports and metrics."""
MESSAGE_LIMIT = 2000
_HINT = " — hint: "
_SKIPPED = re.compile(r"^\('.*', \d+, '(?:Skipped: )?(?P<reason>.*)'\)$", re.S)


def check_id(nodeid: str) -> str:
    """A check's stable id: its node id from ``opschecks/`` on (an installed package's path varies)."""
    at = nodeid.find("opschecks/")
    return nodeid[at:] if at > 0 else nodeid


@dataclass(frozen=True)
class Figure:
    """A number a check measured (consistency counts, a lag): exported as a metric."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    check: str
    outcome: str
    duration: float
    risk: str = ""
    area: str = ""
    message: str = ""
    hint: str = ""
    figures: tuple[Figure, ...] = ()
    known: dict[str, str] | None = None  # the baseline entry (reason, owner, expires) of a known failure

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING

    @property
    def digest(self) -> str:
        """Tells one failure from another: the same message gives the same digest."""
        if not self.message:
            return ""
        return hashlib.sha256(f"{self.message}{_HINT}{self.hint}".encode()).hexdigest()[:16]


def outcome_of(json_outcome: str) -> str:
    """pytest-json-report's outcome as ours (``xfailed`` is a known failure)."""
    return "known" if json_outcome == "xfailed" else json_outcome if json_outcome in OUTCOMES else "error"


def split_hint(text: str) -> tuple[str, str]:
    """``what [where] — ids — hint: fix`` → (``what [where] — ids``, ``fix``)."""
    message, sep, hint = text.rpartition(_HINT)
    return (message, hint) if sep else (text, "")


def message_of(longrepr: str) -> str:
    """The failure's own words: a check's one-line message as it is, a traceback's ``E`` lines, a skip's reason."""
    text = longrepr.strip()
    skipped = _SKIPPED.match(text)
    if skipped:
        return skipped["reason"]
    if "\n" in text:
        errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
        if errors:
            text = " ".join(errors)
    return text[:MESSAGE_LIMIT]


def from_test(test: dict[str, Any]) -> CheckResult:
    """One entry of a JSON report's ``tests``."""
    outcome = outcome_of(str(test.get("outcome", "error")))
    duration = 0.0
    longrepr = ""
    for phase in ("setup", "call", "teardown"):
        stage = test.get(phase) or {}
        duration += float(stage.get("duration") or 0.0)
        if not longrepr and stage.get("longrepr") and stage.get("outcome") != "passed":
            longrepr = str(stage["longrepr"])
    meta = (test.get("metadata") or {}).get("kfm") or {}
    message, hint = split_hint(message_of(longrepr)) if outcome != "passed" else ("", "")
    figures = tuple(Figure(str(f["name"]), float(f["value"]), {str(k): str(v) for k, v in f.get("labels", {}).items()})
                    for f in meta.get("figures", []))
    return CheckResult(check=check_id(str(test["nodeid"])), outcome=outcome, duration=round(duration, 6),
                       risk=str(meta.get("risk") or ""), area=str(meta.get("area") or ""), message=message,
                       hint=hint, figures=figures, known=meta.get("known"))


def from_report(report: dict[str, Any]) -> list[CheckResult]:
    """Every check of a JSON report (a check run's, or an action's verification)."""
    return [from_test(t) for t in report.get("tests", []) if "::" in str(t.get("nodeid", ""))
            and not str(t["nodeid"]).startswith("kfm-maint::")]


def counts(results: list[CheckResult]) -> dict[str, int]:
    """How many checks ended with each outcome (every outcome named, zeros included)."""
    found = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        found[result.outcome] += 1
    return found


def severity_rank(risk: str) -> int:
    """Sort key: high first, then medium, low, none."""
    return RISK_TIERS.index(risk) if risk in RISK_TIERS else len(RISK_TIERS)
