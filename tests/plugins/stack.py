"""Write access to the local stack for the tests, through the same gate users get (``kfm_write_access``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kfm_ops.hub import ServiceHub
from kfm_ops.pytest_plugin.fixtures import WriteAccess
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PostgisStore

WRITABLE = ("postgis", "graph", "search", "cache")


@pytest.fixture(scope="session")
def stack(kfm_write_access: WriteAccess) -> ServiceHub:
    """Hub with write access to the four data stores of the local stack (for injecting and restoring faults)."""
    return kfm_write_access.hub(*WRITABLE)


@pytest.fixture(scope="session")
def owner_pg(stack: ServiceHub) -> PostgisStore:
    """Owner session on the canonical store (autocommit)."""
    return stack.postgis(write=True)


@pytest.fixture(scope="session")
def graph_writer(stack: ServiceHub) -> GraphStore:
    """The graph in WRITE access mode."""
    return stack.graph(write=True)


@pytest.fixture(scope="session")
def search_writer(stack: ServiceHub) -> Any:
    """An opensearch-py client without the read-only transport."""
    return stack.search(write=True).client


@pytest.fixture(scope="session")
def cache_writer(stack: ServiceHub) -> Any:
    """A redis-py client logged in as the cache owner."""
    return stack.cache(write=True).client


def _maintained(*commands: list[str]) -> None:
    """Each ``kfm-maint`` command in turn (unverified); the first that fails fails the fixture."""
    from tests.helpers import kfm_maint

    for args in commands:
        proc = kfm_maint(*args, "--no-verify")
        assert proc.returncode == 0, f"kfm-maint {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="session")
def catalog() -> None:
    """The sample catalog loaded and derived into every store (idempotent: fast when already there)."""
    _maintained(["migrate", "--environment", "dev"], ["identity", "stamp", "--targets", "search,graph,cache"],
                ["sample-data", "init"], ["reindex", "--targets", "search,graph", "--prune"], ["cache", "rebuild"])


@pytest.fixture
def catalog_restored() -> Iterator[None]:
    """For a test that deletes items or retires datasets in the canonical store: the sample catalog loaded again
    afterwards, and the derived stores synced to it (the tests after it expect the whole catalog)."""
    yield
    _maintained(["sample-data", "init", "--force"], ["sync", "--targets", "search,graph,cache"])
