"""Every check in opschecks has at least one test that injects its fault (``@pytest.mark.proves``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def _collect(path: str, tmp_path: Path) -> dict[str, list[str]]:
    index = tmp_path / f"{path}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", path, "--collect-only", "-q", "-p", "no:cacheprovider",
         "-p", "tests.proof_index"],
        cwd=ROOT, env={**os.environ, "KFM_PROOF_INDEX": str(index)}, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data: dict[str, list[str]] = json.loads(index.read_text())
    return data


def test_every_check_has_a_proving_test(tmp_path: Path) -> None:
    checks = {re.sub(r"\[.*\]$", "", nodeid) for nodeid in _collect("opschecks", tmp_path)}
    proofs = _collect("tests", tmp_path)
    proven = {target for targets in proofs.values() for target in targets}
    assert checks, "no checks collected"
    unknown = sorted(proven - checks)
    assert not unknown, f"proves() names checks that do not exist: {unknown}"
    missing = sorted(checks - proven)
    assert not missing, f"checks without a proving test: {missing}"
