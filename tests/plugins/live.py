"""A stand-in pipeline writing the canonical store while the harness works (tests/pipeline.py), and the
helpers the live-production tests share."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import kfm_maint
from tests.pipeline import Pipeline

RETIRED = "grain-elevators"  # the dataset the pipeline retires
CONSISTENCY = "opschecks/consistency"


def maint_ok(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``kfm-maint <args> --no-verify --json`` that must succeed: its JSON summary."""
    proc = kfm_maint(*args, "--no-verify", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def failures(results: dict[str, Any]) -> dict[str, str]:
    """The checks of a run that neither passed nor were skipped, with the start of their message."""
    return {nodeid: r.message[:400] for nodeid, r in results.items() if r.outcome not in ("passed", "skipped")}


@pytest.fixture
def pipeline(kfm_settings: Any, catalog_restored: None) -> Iterator[Any]:
    """start(rate, seconds): a pipeline writing to the canonical store; the sample catalog is restored afterwards."""
    section = kfm_settings.postgis
    started: list[Pipeline] = []

    def start(rate: float, seconds: float, retire: str | None = RETIRED) -> Pipeline:
        run = Pipeline(section.write_dsn, section.write_password.get_secret_value(), rate=rate, seconds=seconds,
                       retire=retire)
        run.start()
        started.append(run)
        return run

    yield start
    for run in started:  # before catalog_restored loads the catalog again
        run.stop()
