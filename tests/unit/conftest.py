"""The unit layer: pure code, no service, and none of the operator's KFM_* settings."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """KFM_* variables exported in the shell (a sourced .env) must not change what a unit test sees."""
    for name in [n for n in os.environ if n.startswith("KFM_")]:
        monkeypatch.delenv(name)
