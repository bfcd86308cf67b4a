"""``kfm-maint report --html FILE``: the report as one self-contained page (inline CSS and SVG, nothing fetched).

Top to bottom: the status of the latest run; the checks failing now, highest risk first, each
with its message, hint and trend; what changed (new, recovered, flapping, known); the last run
by area and risk tier; every check with its trend strip (one square per run of the window,
oldest left); the baseline's expired and unused entries; the action ledger of the period.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any

from kfm_ops.results import FAILING, OUTCOMES, RISK_TIERS, severity_rank

COLOURS = {"passed": "#15803d", "failed": "#dc2626", "error": "#7e22ce", "skipped": "#9ca3af", "known": "#d97706",
           "xpassed": "#0284c7", None: "#e5e7eb"}
AREA_ORDER = ("health", "contract", "governance", "consistency")

CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#111827;background:#f3f4f6}main{max-width:1180px;margin:0 auto;padding:0 20px 40px}
header.top{padding:18px 20px;color:#fff}header.top.bad{background:#b91c1c}header.top.ok{background:#15803d}
header.top .inner{max-width:1180px;margin:0 auto}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;opacity:.95}code{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace}
section{background:#fff;border-radius:8px;margin:16px 0;padding:14px 18px;box-shadow:0 1px 2px #0002;
overflow-x:auto}td code{word-break:break-all}svg.trend{display:block}
h2{font-size:17px;margin:0 0 10px}h3{font-size:14px;margin:4px 0}
.failure{border-left:6px solid #dc2626;padding:8px 12px;margin:10px 0;background:#fef2f2;border-radius:4px}
.failure.risk-high{border-color:#7f1d1d}.failure.risk-medium{border-color:#dc2626}.failure.risk-low{border-color:#f87171}
.message{margin:4px 0;white-space:pre-wrap;word-break:break-word}.hint{margin:4px 0;color:#1e3a8a}
.badge{display:inline-block;font-size:11px;font-weight:600;text-transform:uppercase;padding:1px 7px;
border-radius:9px;margin-right:5px;background:#e5e7eb;color:#111827}
.badge.high{background:#7f1d1d;color:#fff}
.badge.medium{background:#dc2626;color:#fff}.badge.low{background:#fecaca;color:#7f1d1d}
.badge.new{background:#111827;color:#fff}.badge.persisting{background:#fde68a}.badge.flapping{background:#bae6fd}
.allgood{font-size:16px;color:#15803d;font-weight:600}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{font-size:12px;color:#4b5563}
td.num{text-align:right}.cell-bad{background:#fee2e2;font-weight:600}.cell-ok{background:#dcfce7}
.o-failed,.o-error{color:#b91c1c;font-weight:600}.o-passed{color:#15803d}.o-known{color:#b45309}
.legend span{display:inline-block;margin-right:12px}.sw{display:inline-block;width:10px;height:10px;
margin-right:4px;border-radius:2px;vertical-align:middle}ul.changes{margin:4px 0 8px;padding-left:20px}
footer{color:#6b7280;font-size:12px;margin-top:20px}
"""


def _when(iso: str) -> str:
    """``2026-03-01T06:00:12.345+00:00`` → ``2026-03-01 06:00:12 UTC`` (the history stores UTC)."""
    return iso[:19].replace("T", " ") + " UTC"


def trend_svg(trend: Iterable[str | None], times: list[str]) -> str:
    """One square per run (oldest left), coloured by the check's outcome in it."""
    cells = []
    for n, outcome in enumerate(trend):
        when = times[n] if n < len(times) else ""
        fill = COLOURS.get(outcome, COLOURS[None])
        cells.append(f'<rect x="{n * 11}" y="0" width="9" height="14" rx="2" fill="{fill}">'
                     f"<title>{escape(when)}: {escape(outcome or 'not run')}</title></rect>")
    width = max(11 * len(cells) - 2, 1)
    return (f'<svg class="trend" width="{width}" height="14" viewBox="0 0 {width} 14" role="img" '
            f'aria-label="trend">{"".join(cells)}</svg>')


def _failures(doc: dict[str, Any], trends: dict[str, list[str | None]], times: list[str]) -> str:
    changes = {e["check"]: "new" for e in doc["new"]} | {e["check"]: "persisting" for e in doc["persisting"]}
    flapping = {e["check"] for e in doc["flapping"]}
    failing = sorted((c for c in doc["checks"] if c["outcome"] in FAILING),
                     key=lambda c: (severity_rank(c["risk"]), c["check"]))
    if not failing:
        return (f'<section id="failing"><p class="allgood">All {len(doc["checks"])} checks pass or are known.</p>'
                "</section>")
    cards = []
    for c in failing:
        badges = [f'<span class="badge {escape(c["risk"])}">{escape(c["risk"] or "no risk tier")}</span>',
                  f'<span class="badge">{escape(c["area"] or "-")}</span>']
        if c["check"] in changes:
            badges.append(f'<span class="badge {changes[c["check"]]}">{changes[c["check"]]}</span>')
        if c["check"] in flapping:
            badges.append('<span class="badge flapping">flapping</span>')
        cards.append(
            f'<article class="failure risk-{escape(c["risk"] or "none")}" data-check="{escape(c["check"])}">'
            f'<div>{"".join(badges)}</div><h3><code>{escape(c["check"])}</code></h3>'
            f'<p class="message">{escape(c["message"] or c["outcome"])}</p>'
            + (f'<p class="hint">Hint: {escape(c["hint"])}</p>' if c["hint"] else "")
            + f"<div>{trend_svg(trends[c['check']], times)}</div></article>")
    return f'<section id="failing"><h2>Failing now ({len(failing)})</h2>{"".join(cards)}</section>'


def _changes(doc: dict[str, Any]) -> str:
    parts = []
    for key, title in (("new", "New failures"), ("persisting", "Persisting failures"), ("recovered", "Recovered"),
                       ("flapping", "Flapping"), ("known", "Known failures (baseline)")):
        items = "".join(f"<li><code>{escape(e['check'])}</code>"
                        + (f" — {e['changes']} changes in {e['runs']} runs" if key == "flapping" else "")
                        + (" — message changed" if e.get("changed") else "") + "</li>" for e in doc[key])
        parts.append(f"<h3>{title} ({len(doc[key])})</h3>" + (f'<ul class="changes">{items}</ul>' if items else ""))
    ref = doc.get("reference")
    against = f"the run of {escape(_when(ref['started_at']))}" if ref else "no earlier run"
    return f'<section id="changes"><h2>Since {against}</h2>{"".join(parts)}</section>'


def _matrix(checks: list[dict[str, Any]]) -> str:
    areas = [a for a in AREA_ORDER if any(c["area"] == a for c in checks)]
    areas += sorted({c["area"] for c in checks} - set(areas))
    head = "".join(f"<th>{t}</th>" for t in RISK_TIERS)
    rows = []
    for area in areas:
        cells = []
        for tier in RISK_TIERS:
            these = [c for c in checks if c["area"] == area and c["risk"] == tier]
            bad = sum(c["outcome"] in FAILING for c in these)
            css = "cell-bad" if bad else ("cell-ok" if these else "")
            cells.append(f'<td class="{css}">' + (f"{len(these) - bad} ok, {bad} failing" if these else "–") + "</td>")
        rows.append(f"<tr><th>{escape(area or 'other')}</th>{''.join(cells)}</tr>")
    return (f'<section id="matrix"><h2>Last run by area and risk tier</h2><table><tr><th></th>{head}</tr>'
            f'{"".join(rows)}</table></section>')


def _checks(checks: list[dict[str, Any]], times: list[str]) -> str:
    legend = "".join(f'<span><i class="sw" style="background:{COLOURS[o]}"></i>{o}</span>' for o in OUTCOMES)
    rows = []
    for c in sorted(checks, key=lambda c: (AREA_ORDER.index(c["area"]) if c["area"] in AREA_ORDER else 9,
                                           severity_rank(c["risk"]), c["check"])):
        rows.append(f'<tr><td>{escape(c["area"])}</td><td><code>{escape(c["check"])}</code></td>'
                    f'<td>{escape(c["risk"])}</td><td class="o-{escape(c["outcome"])}">{escape(c["outcome"])}</td>'
                    f'<td class="num">{c["duration_s"]:.2f}s</td><td>{trend_svg(c["trend"], times)}</td></tr>')
    return (f'<section id="checks"><h2>Every check ({len(checks)})</h2><p class="legend">{legend}'
            f'<span><i class="sw" style="background:{COLOURS[None]}"></i>not run</span></p><table><tr><th>area</th>'
            f'<th>check</th><th>risk</th><th>outcome</th><th>duration</th><th>trend (oldest left)</th></tr>'
            f'{"".join(rows)}</table></section>')


def _baseline(doc: dict[str, Any]) -> str:
    b = doc.get("baseline")
    if not b:
        return ""
    rows = [f"<li>EXPIRED <code>{escape(e['check'])}</code> — {escape(e['reason'])} (owner {escape(e['owner'])}, "
            f"expired {escape(e['expires'])})</li>" for e in b["expired"]]
    rows += [f"<li>UNUSED <code>{escape(e['check'])}</code> — owner {escape(e['owner'])}: no such check</li>"
             for e in b["unused"]]
    return (f'<section id="baseline"><h2>Baseline</h2><p><code>{escape(str(b["file"]))}</code>: {b["entries"]} entries'
            f'</p><ul class="changes">{"".join(rows)}</ul></section>')


def _ledger(doc: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><td>{escape(_when(str(r["started_at"])))}</td><td>{escape(r["action"])}</td>'
        f'<td class="o-{"passed" if r["outcome"] == "succeeded" else "failed"}">{escape(r["outcome"])}</td>'
        f'<td>{escape(r["actor"])}</td><td class="num">{(r["duration_ms"] or 0) / 1000:.1f}s</td>'
        f'<td>{escape(r["error"] or "")}</td></tr>' for r in doc["ledger"])
    table = ('<table><tr><th>started</th><th>action</th><th>outcome</th><th>actor</th><th>duration</th>'
             f'<th>error</th></tr>{rows}</table>') if rows else "<p>No maintenance action ran in this period.</p>"
    return (f'<section id="ledger"><h2>Actions since {escape(_when(doc["ledger_since"]))} ({len(doc["ledger"])})</h2>'
            f"{table}</section>")


def render(doc: dict[str, Any]) -> str:
    """The page, as one string."""
    title = f"kfm-ops checks — {doc['environment']}"
    if doc.get("latest") is None:
        body = (f'<header class="top ok"><div class="inner"><h1>{escape(title)}</h1><p>{escape(doc["message"])}</p>'
                "</div></header>")
        return _page(title, body)
    latest, checks = doc["latest"], doc["checks"]
    times = [_when(r["started_at"]) for r in doc["runs"]]
    trends = {c["check"]: c["trend"] for c in checks}
    failing = sum(c["outcome"] in FAILING for c in checks)
    counts = ", ".join(f"{v} {k}" for k, v in latest["counts"].items() if v)
    status = f"{failing} failing check{'s' if failing != 1 else ''}" if failing else "all checks pass"
    header = (f'<header class="top {"bad" if failing else "ok"}"><div class="inner"><h1>{escape(title)}: '
              f'{escape(status)}</h1><p>suite <b>{escape(doc["suite"])}</b> · latest run '
              f'{escape(_when(latest["started_at"]))} · exit {latest["exit_code"]} · {escape(counts)}</p>'
              f'<p>run_id <code>{escape(latest["run_id"])}</code> · {len(doc["runs"])} runs in the window</p>'
              "</div></header>")
    body = header + "<main>" + _failures(doc, trends, times) + _changes(doc) + _matrix(checks) + \
        _checks(checks, times) + _baseline(doc) + _ledger(doc) + \
        f'<footer>generated {escape(doc["generated_at"])} by kfm-maint report</footer></main>'
    return _page(title, body)


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>{escape(title)}</title><style>{CSS}</style></head>'
            f"<body>{body}</body></html>\n")


def write_html(path: Path, doc: dict[str, Any]) -> None:
    """Write the page next to ``path`` and rename it over (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render(doc))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
