"""No tracked file names a path that only exists on one machine.

A home directory (``/root/...``, ``/home/<user>/...``) or a fixed temp-file name
(``"/tmp/name"``) works where it was written and fails on a fresh machine: binaries
come from devstack (``devstack/stack which NAME``), temporary files from ``tmp_path``
or :mod:`tempfile`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = re.compile(r"\.(py|sh|toml|ini|cfg|yml|yaml|json)$|(^|/)(Makefile|Dockerfile|stack|run|rehearse)$|^\.ci/")
MACHINE_PATHS = {
    "a home directory": re.compile(r"(?<![\w.$~{}-])/(?:root|home/[A-Za-z0-9_.-]+)(?=/|\b)"),
    "a fixed temp-file name": re.compile(r"(?<![\w.$~{}-])/(?:var/)?tmp/[A-Za-z0-9_.{-]"),
}
# Where a fixed path is the point, the line says so: `machine-path: <why>`.
ALLOW = "machine-path:"


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if SCANNED.search(p) and not p.startswith("docs/")]


def offenders() -> list[str]:
    found = []
    for path in tracked():
        if path == "tests/unit/test_no_machine_paths.py":
            continue
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if ALLOW in line:
                continue
            for kind, pattern in MACHINE_PATHS.items():
                if pattern.search(line):
                    found.append(f"{path}:{number}: {kind}: {line.strip()[:120]}")
    return found


def test_tracked_files_name_no_machine_paths() -> None:
    problems = offenders()
    assert not problems, ("paths of one machine (use devstack's binary(), tmp_path or tempfile; or mark the "
                          f"line '{ALLOW} <why>'):\n" + "\n".join(problems))


def test_the_scan_finds_what_it_looks_for() -> None:
    home = "/" + "root/go/bin/opa"
    temp = '"/' + 'tmp/kfm-dry.pw"'
    assert MACHINE_PATHS["a home directory"].search(f"candidate = {home!r}")
    assert MACHINE_PATHS["a fixed temp-file name"].search(f"out = {temp}")
    assert not MACHINE_PATHS["a home directory"].search('Path.home() / "go" / "bin"; $HOME/go/bin')
    assert not MACHINE_PATHS["a fixed temp-file name"].search("tempfile.mkdtemp(prefix='kfm-')")
