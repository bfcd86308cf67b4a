"""Every check in opschecks has a test that injects its fault, and docs/checks.md lists them all.

Regenerate the document with ``python -m tests.test_proofs_complete > docs/checks.md``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kfm_ops.contracts.elements import elements
from kfm_ops.settings import SERVICES
from tests.helpers import ROOT


def _collect(path: str, tmp: Path) -> dict[str, dict[str, Any]]:
    index = tmp / f"{path}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", path, "--collect-only", "-q", "-p", "no:cacheprovider",
         "-p", "tests.proof_index"],
        cwd=ROOT, env={**os.environ, "KFM_PROOF_INDEX": str(index)}, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data: dict[str, dict[str, Any]] = json.loads(index.read_text())
    return data


def _checks_and_proofs(tmp: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    checks: dict[str, dict[str, Any]] = {}
    for nodeid, info in _collect("opschecks", tmp).items():
        known = checks.setdefault(re.sub(r"\[.*\]$", "", nodeid), info)
        known["services"] = [s for s in SERVICES if s in known["services"] or s in info["services"]]
    proofs: dict[str, list[str]] = {}
    for nodeid, info in _collect("tests", tmp).items():
        for target in info["proves"]:
            proofs.setdefault(target, []).append(re.sub(r"\[.*\]$", "", nodeid))
    return checks, proofs


def coverage(checks: dict[str, dict[str, Any]]) -> tuple[dict[str, list[str]], list[str]]:
    """{contract element: the checks that cover it}, and the covers() patterns that match no element."""
    found: dict[str, list[str]] = {e: [] for e in elements()}
    idle = []
    for nodeid, info in sorted(checks.items()):
        for pattern in info["covers"]:
            matched = fnmatch.filter(found, pattern)
            idle += [] if matched else [f"{nodeid}: {pattern}"]
            for element in matched:
                found[element].append(nodeid.split("::")[-1])
    return found, idle


def render(checks: dict[str, dict[str, Any]], proofs: dict[str, list[str]]) -> str:
    lines = ["# The checks", "",
             "Every check in `opschecks/`, what it verifies, its risk tier, whether it is a smoke check,",
             "the services it touches, and the test in `tests/` that injects the fault it targets into the",
             "real local stack and sees it fail. Generated: `python -m tests.test_proofs_complete > docs/checks.md`;",
             "`tests/test_proofs_complete.py` fails when this file is out of date or a check has no proof.", ""]
    group = None
    for nodeid in sorted(checks):
        info = checks[nodeid]
        folder = nodeid.split("/")[1]
        if folder != group:
            group = folder
            lines += [f"## {folder}", "", "| check | verifies | tier | smoke | services | proved by |",
                      "|---|---|---|:---:|---|---|"]
        proved = "<br>".join(sorted({p.split("::")[-1] for p in proofs.get(nodeid, [])}))
        lines.append(f"| `{nodeid.split('/', 1)[1]}` | {info['doc']} | {info['risk']} | "
                     f"{'✅' if info['smoke'] else ''} | {', '.join(info['services'])} | {proved} |")
        if nodeid == sorted(c for c in checks if c.split("/")[1] == folder)[-1]:
            lines.append("")
    covered, _idle = coverage(checks)
    lines += ["## Contract coverage", "",
              f"Every element of the contracts ({len(covered)}, named by `kfm_ops/contracts/elements.py`) and the "
              "checks that verify it (`@pytest.mark.covers`); `tests/test_proofs_complete.py` fails on an element "
              "no check covers.", "", "| element | checks |", "|---|---|"]
    lines += [f"| `{element}` | {', '.join(sorted(set(by)))} |" for element, by in covered.items()]
    lines += ["", *mutation_score()]
    return "\n".join(lines).rstrip() + "\n"


def mutation_score() -> list[str]:
    """The section on bench/mutation.json: the score, and every miss by name."""
    path = ROOT / "bench" / "mutation.json"
    lines = ["## Mutation score", "",
             "Faults derived from the contracts themselves (`python -m bench.mutation`): for every element a family "
             "of small corruptions of the store that holds it, injected into the local stack, the checks of that "
             "store and of the services whose checks cover the element run, the corruption undone. Caught = at "
             "least one check failed."]
    if not path.is_file():
        return [*lines, "", "Not measured yet."]
    run = json.loads(path.read_text())
    outcomes = run["outcomes"]
    enforced = [o for o in outcomes if o["result"] == "enforced"]
    missed = [o for o in outcomes if o["result"] == "missed"]
    lines += ["", f"Measured {run['measured']} ({run['seconds'] // 60} min, elements `{run['pattern']}`): "
              f"**{run['caught']} of {run['scored']} caught ({run['caught'] / max(run['scored'], 1):.1%})**; "
              f"{len(enforced)} refused by the store itself (not scored); the healthy stack passed every check "
              f"before and {'after' if run['healthy_after'] else 'NOT after'}.", ""]
    if missed:
        lines += ["| missed | corruption |", "|---|---|"]
        lines += [f"| `{o['element']}` | {o['name']}{' — ' + o['note'] if o['note'] else ''} |" for o in missed]
    else:
        lines.append("No corruption went unnoticed.")
    if enforced:
        lines += ["", "Refused by the store: " + "; ".join(f"`{o['element']}` ({o['name']})" for o in enforced) + "."]
    elsewhere = [o for o in outcomes if o["result"] == "elsewhere"]
    if elsewhere:
        lines += ["", "Not scored, another environment's (the local stack runs one): "
                  + "; ".join(f"`{o['element']}` ({o['note']})" for o in elsewhere) + "."]
    return lines


def test_every_check_has_a_proving_test(tmp_path: Path) -> None:
    checks, proofs = _checks_and_proofs(tmp_path)
    assert checks, "no checks collected"
    unknown = sorted(set(proofs) - set(checks))
    assert not unknown, f"proves() names checks that do not exist: {unknown}"
    missing = sorted(set(checks) - set(proofs))
    assert not missing, f"checks without a proving test: {missing}"
    undocumented = sorted(c for c, info in checks.items() if not info["doc"] or not info["risk"])
    assert not undocumented, f"checks without a docstring or a risk tier: {undocumented}"
    covered, idle = coverage(checks)
    uncovered = sorted(e for e, by in covered.items() if not by)
    assert not uncovered, f"contract elements no check covers (@pytest.mark.covers): {uncovered}"
    assert not idle, f"covers() patterns that match no contract element: {idle}"
    assert (ROOT / "docs" / "checks.md").read_text() == render(checks, proofs), \
        "docs/checks.md is out of date: python -m tests.test_proofs_complete > docs/checks.md"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        sys.stdout.write(render(*_checks_and_proofs(Path(tmp))))
