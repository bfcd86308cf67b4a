"""Fixtures of kfm-ops's own test suite: write access to the local stack for fault injection.

Checks under test run in separate pytest processes (tests/helpers.py), so a
fault injected here is seen by a real check session, and restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kfm_ops.hub import ServiceHub
from kfm_ops.settings import Settings


@pytest.fixture(scope="session")
def stack(kfm_settings: Settings) -> Iterator[ServiceHub]:
    """Write-capable hub on the local stack, for injecting and restoring faults."""
    hub = ServiceHub(kfm_settings, writes_allowed=True, application_name="kfm-ops-tests")
    yield hub
    hub.close()


@pytest.fixture(scope="session")
def owner_pg(stack: ServiceHub) -> Any:
    """Owner connection to the canonical store (autocommit)."""
    return stack.writer("postgis")


@pytest.fixture(scope="session")
def graph_writer(stack: ServiceHub) -> Any:
    """Neo4j handle in WRITE access mode."""
    return stack.writer("graph")


@pytest.fixture(scope="session")
def search_writer(stack: ServiceHub) -> Any:
    """OpenSearch client without the read-only transport."""
    return stack.writer("search")


@pytest.fixture(scope="session")
def cache_writer(stack: ServiceHub) -> Any:
    """Redis client logged in as the cache owner."""
    return stack.writer("cache")


@pytest.fixture(scope="session")
def catalog() -> None:
    """The sample catalog loaded and derived into every store (idempotent: fast when already there)."""
    from tests.helpers import kfm_maint

    for args in (["sample-data", "init"], ["reindex", "--targets", "search,graph", "--prune"], ["cache", "rebuild"]):
        proc = kfm_maint(*args, "--no-verify")
        assert proc.returncode == 0, f"kfm-maint {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
