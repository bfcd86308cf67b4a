"""kfm-maint runs the installed checks isolated from the directory it is started in.

A hostile directory: a pytest.ini whose addopts load a plugin from that directory, that
plugin itself (it would run with the harness's write credentials in the environment), and
an ``opschecks/`` package that would shadow the real suite with one passing test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

PLUGIN = '''
import pathlib
pathlib.Path(__file__).with_name("PLUGIN_RAN").write_text("the hostile plugin was loaded")
'''


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p hostile_plugin\n")
    (tmp_path / "conftest.py").write_text(PLUGIN.replace("PLUGIN_RAN", "CONFTEST_RAN"))
    (tmp_path / "hostile_plugin.py").write_text(PLUGIN)
    shadow = tmp_path / "opschecks"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    (shadow / "test_shadow.py").write_text("def test_everything_is_fine():\n    assert True\n")
    return tmp_path


@pytest.mark.parametrize("command", [["smoke"], ["check", "--", "-m", "smoke and postgis"]])
def test_check_runs_ignore_the_current_directory(hostile: Path, command: list[str]) -> None:
    report = hostile / "report.json"
    env = {**os.environ, "KFM_ENV_FILE": str(ROOT / ".env.example")}
    kfm_maint = Path(sys.executable).with_name("kfm-maint")  # the console script an operator runs
    proc = subprocess.run([str(kfm_maint), *command[:1], "--json-report-file", str(report), *command[1:]],
                          cwd=hostile, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (hostile / "PLUGIN_RAN").exists() and not (hostile / "CONFTEST_RAN").exists()
    nodeids = [t["nodeid"] for t in json.loads(report.read_text())["tests"]]
    assert "test_everything_is_fine" not in " ".join(nodeids)
    assert any(n.endswith("::test_postgis_reachable") for n in nodeids), nodeids
