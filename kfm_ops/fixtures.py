"""Public fixtures of the kfm-ops pytest plugin (``pytest --fixtures`` lists them).

Layers: session settings → session hub → session read-only clients; the
function-scoped ``kfm_writer`` is the one door to write-capable clients and
stays shut unless the test is marked ``kfm_writable``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kfm_ops import contracts as _contracts
from kfm_ops.errors import KfmError, NotConfigured
from kfm_ops.hub import ServiceHub
from kfm_ops.settings import Settings

HUB_KEY = pytest.StashKey[ServiceHub]()
SETTINGS_KEY = pytest.StashKey[Settings]()
RUN_ID_KEY = pytest.StashKey[str]()


def service_client(request: pytest.FixtureRequest, name: str) -> Any:
    """Resolve a read-only client; skip when not configured, fail when unreachable."""
    hub: ServiceHub = request.config.stash[HUB_KEY]
    try:
        return hub.client(name)
    except NotConfigured as exc:
        problem, not_configured = str(exc), True
    except KfmError as exc:
        problem, not_configured = str(exc), False
    # Outside the except blocks, so the report shows one message, not a chained exception.
    if not_configured and not hub.settings.require_all_services:
        pytest.skip(problem)
    pytest.fail(problem + (" and --kfm-require-all is set" if not_configured else ""), pytrace=False)


@pytest.fixture(scope="session")
def kfm_settings(pytestconfig: pytest.Config) -> Settings:
    """The harness settings (KFM_* variables, env file, secrets dir)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def kfm_run_id(pytestconfig: pytest.Config) -> str:
    """The run_id of this check session (also in logs and the JSON report)."""
    return pytestconfig.stash[RUN_ID_KEY]


@pytest.fixture(scope="session")
def kfm_hub(pytestconfig: pytest.Config) -> ServiceHub:
    """The read-only service hub shared by every check of the session."""
    return pytestconfig.stash[HUB_KEY]


@pytest.fixture(scope="session")
def kfm_contract(kfm_settings: Settings) -> Callable[[str], dict[str, Any]]:
    """Load a KFM contract by name: postgis, search, graph or cache."""
    return lambda name: _contracts.load(name, kfm_settings.contracts_dir)


@pytest.fixture(scope="session")
def postgis(request: pytest.FixtureRequest) -> Any:
    """Read-only psycopg connection to the canonical PostGIS store (autocommit)."""
    return service_client(request, "postgis")


@pytest.fixture(scope="session")
def graph(request: pytest.FixtureRequest) -> Any:
    """Read-only Neo4j handle: every query runs in READ access mode."""
    return service_client(request, "graph")


@pytest.fixture(scope="session")
def search(request: pytest.FixtureRequest) -> Any:
    """Read-only OpenSearch client: write requests are refused in-process."""
    return service_client(request, "search")


@pytest.fixture(scope="session")
def cache(request: pytest.FixtureRequest) -> Any:
    """Redis client logged in as the read-only cache user."""
    return service_client(request, "cache")


@pytest.fixture(scope="session")
def policy(request: pytest.FixtureRequest) -> Any:
    """Client of the OPA policy gate (evaluates KFM policies, cannot change them)."""
    return service_client(request, "policy")


@pytest.fixture(scope="session")
def llm(request: pytest.FixtureRequest) -> Any:
    """Client of the LLM runtime (OpenAI-compatible or Ollama flavour)."""
    return service_client(request, "llm")


@pytest.fixture
def kfm_writer(request: pytest.FixtureRequest, kfm_settings: Settings) -> Any:
    """Hub with write-capable clients; only for tests marked ``kfm_writable``."""
    if request.node.get_closest_marker("kfm_writable") is None:
        pytest.fail(
            "kfm_writer refused: write access is blocked by default in check sessions. "
            "Mark the test with @pytest.mark.kfm_writable if it must mutate a store.",
            pytrace=False,
        )
    hub = ServiceHub(kfm_settings, writes_allowed=True, application_name="kfm-ops-test")
    yield hub
    hub.close()


SERVICE_FIXTURES = ("postgis", "graph", "search", "cache", "policy", "llm")
