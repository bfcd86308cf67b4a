"""The checks give the same outcomes in parallel (pytest-xdist) as serially."""

from __future__ import annotations

import pytest

from tests.helpers import run_checks

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]


def test_parallel_outcomes_equal_serial_outcomes() -> None:
    serial = {nodeid: r.outcome for nodeid, r in run_checks("opschecks").items()}
    parallel = {nodeid: r.outcome for nodeid, r in run_checks("opschecks", "-n", "2").items()}
    assert serial, "no checks ran"
    assert parallel == serial
