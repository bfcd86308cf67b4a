"""``kfm-maint report``: what changed in the check history, since the previous run or a given time.

Read-only (the reader connection, like ``check``). The latest run of a suite is compared with
a reference run — the one before it, or with ``--since`` the last one before that time:

- **new** failures fail now and did not in the reference run;
- **persisting** failures failed then and fail now (``changed`` when the message differs);
- **recovered** checks failed then and pass now;
- **flapping** checks changed between passing and failing at least twice within the window
  (the last ``KFM_HISTORY__FLAP_WINDOW`` runs, or every run since ``--since``).

Plus the known failures of the latest run and the baseline's expired and unused entries, and
the action ledger of the period. ``--json`` prints one document; ``--html FILE`` writes a page.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any

from kfm_ops import history
from kfm_ops.baseline import load as load_baseline
from kfm_ops.errors import UsageError
from kfm_ops.history import Run
from kfm_ops.hub import ServiceHub
from kfm_ops.redact import redact_obj
from kfm_ops.results import FAILING, severity_rank
from kfm_ops.settings import Settings

_RELATIVE = re.compile(r"^(?P<n>\d+)(?P<unit>[mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """``2026-03-01``, ``2026-03-01T06:00`` (UTC unless it names a zone), or ``36h`` / ``7d`` / ``90m`` / ``2w`` ago."""
    now = now or dt.datetime.now(dt.UTC)
    relative = _RELATIVE.match(value.strip())
    if relative:
        return now - dt.timedelta(**{_UNITS[relative["unit"]]: int(relative["n"])})
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"--since {value!r} is not a time",
                         hint="e.g. 2026-03-01, 2026-03-01T06:00Z, 36h, 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _state(outcome: str | None) -> str | None:
    """pass / fail for the flapping count; known, skipped and absent do not count."""
    if outcome in FAILING:
        return "fail"
    return "pass" if outcome == "passed" else None


def changes(reference: Run | None, runs: list[Run]) -> dict[str, list[dict[str, Any]]]:
    """New, persisting and recovered failures of the latest run against ``reference``; flapping and known checks."""
    latest = runs[-1]
    before = reference.results if reference else {}
    found: dict[str, list[dict[str, Any]]] = {"new": [], "persisting": [], "recovered": [], "flapping": [],
                                              "known": []}

    def entry(check: str, **extra: Any) -> dict[str, Any]:
        now = latest.results.get(check) or before[check]
        return {"check": check, "risk": now.risk, "area": now.area, "outcome": now.outcome, "message": now.message,
                "hint": now.hint, **extra}

    for check, now in latest.results.items():
        then = before.get(check)
        if now.outcome in FAILING:
            if then is not None and then.outcome in FAILING:
                found["persisting"].append(entry(check, changed=then.digest != now.digest,
                                                 failing_since=_failing_since(check, runs)))
            else:
                found["new"].append(entry(check))
        elif now.outcome == "passed" and then is not None and then.outcome in FAILING:
            found["recovered"].append(entry(check, was=then.message))
        elif now.outcome == "known":
            found["known"].append(entry(check))
    for check in sorted({c for run in runs for c in run.results}):
        states = [s for run in runs if (s := _state(run.results[check].outcome if check in run.results else None))]
        flips = sum(1 for a, b in itertools.pairwise(states) if a != b)
        if flips >= 2:
            base = entry(check) if check in latest.results else {"check": check}
            found["flapping"].append({**base, "changes": flips, "runs": len(states)})
    for key in found:
        found[key].sort(key=lambda e: (severity_rank(e.get("risk", "")), e["check"]))
    return found


def _failing_since(check: str, runs: list[Run]) -> str | None:
    """When the current streak of failures of ``check`` began, within the window."""
    since = None
    for run in reversed(runs):
        stored = run.results.get(check)
        if stored is None or stored.outcome not in FAILING:
            break
        since = run.started_at.isoformat()
    return since


def build(settings: Settings, hub: ServiceHub, *, suite: str | None, since: dt.datetime | None) -> dict[str, Any]:
    """The report document (what ``--json`` prints and ``--html`` renders)."""
    conn = hub.postgis()
    if not conn.exists(history.RUNS):
        raise UsageError("there is no check history: kfm_ops.check_runs does not exist",
                         hint="run `kfm-maint migrate`; `kfm-maint check` records each run")
    environment = settings.environment_label
    suite = suite or history.latest_suite(conn, environment)
    doc: dict[str, Any] = {"environment": environment, "suite": suite, "since": since.isoformat() if since else None,
                           "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if suite is None:
        return {**doc, "latest": None, "message": f"no check run is recorded for {environment} yet "
                "(`kfm-maint check` records one)"}
    reference, runs = history.window(conn, environment, suite, since=since, runs=settings.history.flap_window)
    if not runs:
        return {**doc, "latest": None, "message": f"no {suite} run in {environment} since {since}"}
    latest = runs[-1]
    period = since or (reference.started_at if reference else latest.started_at)
    baseline = load_baseline(settings.checks.baseline_file)
    doc.update(latest=latest.as_dict(), reference=reference.as_dict() if reference else None,
               runs=[r.as_dict() for r in runs], **changes(reference, runs),
               checks=[{"check": c, "risk": s.risk, "area": s.area, "outcome": s.outcome, "duration_s": s.duration,
                        "message": s.message, "hint": s.hint,
                        "trend": [r.results[c].outcome if c in r.results else None for r in runs]}
                       for c, s in sorted(latest.results.items())],
               baseline=baseline.summary(list(latest.results), dt.date.today()) if baseline.path else None,
               ledger_since=period.isoformat(), ledger=history.ledger(conn, period))
    return redact_obj(doc)  # type: ignore[no-any-return]


def text(doc: dict[str, Any]) -> str:
    """The report for people."""
    if doc.get("latest") is None:
        return f"kfm-ops report — {doc['environment']}: {doc.get('message')}"
    latest, ref = doc["latest"], doc.get("reference")
    c = latest["counts"]
    lines = [f"kfm-ops report — {doc['environment']}, suite {doc['suite']}",
             f"latest run   {latest['started_at']}  run_id {latest['run_id']}  exit {latest['exit_code']}  "
             + ", ".join(f"{v} {k}" for k, v in c.items() if v),
             f"compared with {ref['started_at']}  run_id {ref['run_id']}" if ref
             else "compared with: no earlier run" + (f" before {doc['since']}" if doc.get("since") else "")]
    for key, title in (("new", "NEW FAILURES"), ("persisting", "PERSISTING FAILURES"), ("recovered", "RECOVERED"),
                       ("flapping", "FLAPPING"), ("known", "KNOWN FAILURES (baseline)")):
        lines.append(f"{title} ({len(doc[key])})")
        for e in doc[key]:
            tag = f"[{e.get('risk') or '-'}] " if "risk" in e else ""
            extra = " (message changed)" if e.get("changed") else ""
            extra += f" ({e['changes']} changes in {e['runs']} runs)" if key == "flapping" else ""
            lines.append(f"  {tag}{e['check']}{extra}")
            if key != "recovered" and e.get("message"):
                lines.append(f"      {e['message']}")
                if e.get("hint"):
                    lines.append(f"      hint: {e['hint']}")
    if doc.get("baseline"):
        b = doc["baseline"]
        lines.append(f"BASELINE {b['file']}: {b['entries']} entries, {len(b['expired'])} expired, "
                     f"{len(b['unused'])} unused")
        lines += [f"  EXPIRED {e['check']} (owner {e['owner']}, expired {e['expires']})" for e in b["expired"]]
        lines += [f"  UNUSED {e['check']} (owner {e['owner']})" for e in b["unused"]]
    lines.append(f"ACTIONS since {doc['ledger_since']} ({len(doc['ledger'])})")
    for row in doc["ledger"]:
        lines.append(f"  {row['started_at']}  {row['action']}  {row['outcome']}  by {row['actor']}"
                     + (f"  — {row['error']}" if row.get("error") else ""))
    return "\n".join(lines)


def run_report(args: Any, opts: dict[str, Any], settings: Settings, run_id: str) -> int:
    """``kfm-maint report``: print (or ``--json``) the report, and write ``--html FILE``."""
    since = parse_since(args.since) if args.since else None
    hub = ServiceHub(settings, application_name=f"kfm-maint/{run_id}/report")
    try:
        doc = build(settings, hub, suite=args.suite, since=since)
    finally:
        hub.close()
    if args.html:
        from maintenance.html_report import write_html

        write_html(Path(args.html), doc)
    if opts["json"]:
        sys.stdout.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
    else:
        print(text(doc) + (f"\nHTML: {Path(args.html).resolve()}" if args.html else ""))
    return 0
