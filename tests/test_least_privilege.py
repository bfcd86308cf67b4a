"""Least privilege: check credentials cannot write, and owner credentials given to checks are flagged."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.devstack


def _header(env: dict[str, str]) -> str:
    # a real run: the header probes the services only when checks are to run (not under --collect-only)
    proc = subprocess.run([sys.executable, "-m", "pytest", "opschecks/health/test_cache.py::test_cache_ping",
                           "-p", "no:cacheprovider"], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120, check=False)
    return proc.stdout + proc.stderr


def test_read_only_credentials_raise_no_warning() -> None:
    assert "WARNING" not in _header({})


def test_owner_credentials_for_checks_are_flagged() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    stack = dict(line.split("=", 1) for line in lines if line.startswith("KFM_"))
    out = _header({"KFM_POSTGIS__DSN": stack["KFM_POSTGIS__WRITE_DSN"],
                   "KFM_POSTGIS__PASSWORD": stack["KFM_POSTGIS__WRITE_PASSWORD"],
                   "KFM_CACHE__USERNAME": stack["KFM_CACHE__WRITE_USERNAME"],
                   "KFM_CACHE__PASSWORD": stack["KFM_CACHE__WRITE_PASSWORD"]})
    assert "WARNING postgis: check credentials: the role can write kfm." in out, out
    assert "WARNING cache: check credentials: the user 'default' may run write commands" in out, out
    assert stack["KFM_POSTGIS__WRITE_PASSWORD"] not in out
