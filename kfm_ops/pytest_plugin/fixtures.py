"""Public fixtures of the kfm-ops pytest plugin (``pytest --fixtures`` lists them).

Layers: session settings → session hub → session read-only stores; writes are
blocked by default: ``kfm_writer`` opens write-capable stores only for a test marked
``kfm_writable(*stores)`` and only for those stores; ``kfm_write_access`` is the same
door for session-level setup code (as pytest-django's ``django_db_blocker``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from kfm_ops import contracts as _contracts
from kfm_ops.errors import KfmError, NotConfigured
from kfm_ops.hub import ServiceHub
from kfm_ops.partition import Partition, Slice
from kfm_ops.settings import SERVICES, Settings

if TYPE_CHECKING:  # the stores import their drivers when a check first uses one
    from kfm_ops.buckets import Digests
    from kfm_ops.consistency import SharedDigests
    from kfm_ops.stores.cache import CacheStore
    from kfm_ops.stores.graph import GraphStore
    from kfm_ops.stores.llm import LlmStore
    from kfm_ops.stores.policy import PolicyStore
    from kfm_ops.stores.postgis import PostgisStore
    from kfm_ops.stores.search import SearchStore

ContractLoader = Callable[[str], dict[str, Any]]
"""What ``kfm_contract`` is: the contract called ``name`` (postgis, search, graph, cache)."""

HUB_KEY = pytest.StashKey[ServiceHub]()
SETTINGS_KEY = pytest.StashKey[Settings]()
RUN_ID_KEY = pytest.StashKey[str]()
PARTITION_KEY = pytest.StashKey["Partition"]()


def _read_store(request: pytest.FixtureRequest, name: str) -> Any:
    """Resolve a read-only store; skip when not configured, fail when unreachable."""
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
def kfm_partition(pytestconfig: pytest.Config) -> Partition:
    """The buckets this run's cross-store comparisons cover (``--kfm-partition i/N``; all of them by default)."""
    return pytestconfig.stash[PARTITION_KEY]


@pytest.fixture(scope="session")
def kfm_hub(pytestconfig: pytest.Config) -> ServiceHub:
    """The read-only service hub shared by every check of the session."""
    return pytestconfig.stash[HUB_KEY]


@pytest.fixture(scope="session")
def kfm_contract(kfm_settings: Settings) -> ContractLoader:
    """Load a KFM contract by name: postgis, search, graph, cache or policy."""
    return lambda name: _contracts.load(name, kfm_settings.contracts_dir)


@pytest.fixture(scope="session")
def postgis(request: pytest.FixtureRequest) -> PostgisStore:
    """Read-only canonical store (PostGIS): read-only sessions at the server, a statement timeout."""
    store: PostgisStore = _read_store(request, "postgis")
    return store


@pytest.fixture(scope="session")
def canonical_digests(kfm_settings: Settings) -> SharedDigests:
    """The bucket digests of this run's cross-store checks: read at its start, the canonical ones once for every
    store (each used up to a minute after its read began, never longer than the freshness SLA)."""
    from kfm_ops.consistency import SharedDigests

    return SharedDigests(min(60.0, kfm_settings.checks.max_freshness_lag_seconds))


@pytest.fixture(scope="session", autouse=True)
def _digests_early(request: pytest.FixtureRequest, kfm_settings: Settings, kfm_partition: Partition) -> None:
    """When cross-store checks are in this run, start reading their bucket digests at once, each side in a thread
    of its own (the engines hash while the checks before them run). Not with a read replica (a check waits for it
    to catch up first) nor in an xdist worker (each would read them all)."""
    section = kfm_settings.postgis
    wanting = [set(getattr(item, "fixturenames", ())) for item in request.session.items]
    wanting = [names for names in wanting if "canonical_digests" in names]
    if section is None or section.replica_dsn or hasattr(request.config, "workerinput") or not wanting:
        return
    from kfm_ops.consistency import GraphSide, SearchSide
    from kfm_ops.stores.postgis import PostgisStore

    shared: SharedDigests = request.getfixturevalue("canonical_digests")
    hub: ServiceHub = request.config.stash[HUB_KEY]

    def canonical() -> Digests:  # on a connection of its own: the checks before it use the session's
        store = PostgisStore(section, application_name="kfm-ops digests")
        try:
            return store.bucket_digests(kfm_partition)
        finally:
            store.close()

    shared.read_early(f"canonical {kfm_partition.label}", canonical)

    def search() -> Digests:
        return SearchSide(hub.search(), _contracts.load("search", kfm_settings.contracts_dir)["alias"]).digests()

    sides: dict[str, Callable[[], Digests]] = {"search": search, "graph": lambda: GraphSide(hub.graph()).digests()}
    for store, read in sides.items():
        if any(store in names for names in wanting):
            shared.read_early(store, read)


@pytest.fixture
def canonical(postgis: PostgisStore, kfm_hub: ServiceHub) -> PostgisStore:
    """Where a check's heavy canonical reads go (streams, digests): the read replica
    (KFM_POSTGIS__REPLICA_DSN) once it has replayed what the primary had committed when the check started,
    else ``postgis``; a replica that does not catch up within KFM_POSTGIS__REPLICA_MAX_WAIT fails the check."""
    from kfm_ops.stores.replica import dated

    try:
        replica = kfm_hub.postgis_replica()
        found = dated(postgis, replica) if replica is not None else None
    except KfmError as exc:
        problem = str(exc)
    else:
        if replica is None or found is None:
            return postgis
        if found.caught_up:
            return replica
        problem = (f"the postgis replica at {replica.address} is {found.describe(replica.section.replica_max_wait)}: "
                   "it cannot serve this check's reads (fix its replication: test_postgis_replication_lag; or "
                   "unset KFM_POSTGIS__REPLICA_DSN)")
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def graph(request: pytest.FixtureRequest) -> GraphStore:
    """Read-only knowledge graph (Neo4j): every query runs in a READ transaction."""
    store: GraphStore = _read_store(request, "graph")
    return store


@pytest.fixture(scope="session")
def search(request: pytest.FixtureRequest) -> SearchStore:
    """Read-only search index (OpenSearch): write requests are refused in-process."""
    store: SearchStore = _read_store(request, "search")
    return store


@pytest.fixture(scope="session")
def cache(request: pytest.FixtureRequest) -> CacheStore:
    """Derived cache (Redis), logged in as the read-only cache user."""
    store: CacheStore = _read_store(request, "cache")
    return store


@pytest.fixture(scope="session")
def policy(request: pytest.FixtureRequest) -> PolicyStore:
    """The OPA policy gate: evaluates KFM policies, cannot change them."""
    store: PolicyStore = _read_store(request, "policy")
    return store


@pytest.fixture(scope="session")
def content_slice(kfm_partition: Partition, postgis: PostgisStore, kfm_settings: Settings) -> Slice:
    """The records the content checks read this run: ``--kfm-partition``'s buckets, else the id range of the scrub
    slice the clock points at (the whole catalog up to KFM_CHECKS__CONTENT_MAX_RECORDS items)."""
    from kfm_ops import content  # the store drivers load when a check first needs one

    if kfm_partition.count > 1:
        return kfm_partition
    checks = kfm_settings.checks
    return content.scrub_slice(postgis.item_estimate(), checks.content_max_records, checks.content_slice_seconds,
                               time.time(), postgis.id_sample, collated=postgis.ids_sort_bytewise())


@pytest.fixture
def sensitivity_grid(policy: PolicyStore, kfm_contract: ContractLoader) -> float:
    """The generalization grid (degrees) of the live sensitivity policy, where policy.json says it is."""
    return float(policy.data(kfm_contract("policy")["sensitivity"]["grid_degrees"]))


@pytest.fixture(scope="session")
def llm(request: pytest.FixtureRequest) -> LlmStore:
    """The LLM runtime (OpenAI-compatible or Ollama flavour)."""
    store: LlmStore = _read_store(request, "llm")
    return store


class WriteAccess:
    """Hands out hubs whose write-capable stores are limited to the services asked for."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._hubs: dict[frozenset[str], ServiceHub] = {}

    def hub(self, *stores: str) -> ServiceHub:
        """A hub that may open writers for ``stores`` only (all services when none are named)."""
        unknown = sorted(set(stores) - set(SERVICES))
        if unknown:
            raise pytest.UsageError(f"kfm_writable: unknown store(s) {', '.join(unknown)}; "
                                    f"known: {', '.join(SERVICES)}")
        key = frozenset(stores or SERVICES)
        if key not in self._hubs:
            self._hubs[key] = ServiceHub(self.settings, writes_allowed=True, writable=key,
                                         application_name="kfm-ops-test")
        return self._hubs[key]

    def close(self) -> None:
        for hub in self._hubs.values():
            hub.close()
        self._hubs.clear()


@pytest.fixture(scope="session")
def kfm_write_access(kfm_settings: Settings) -> Iterator[WriteAccess]:
    """Write access for session-level setup code: ``kfm_write_access.hub("postgis")`` (tests use kfm_writer)."""
    access = WriteAccess(kfm_settings)
    yield access
    access.close()


@pytest.fixture
def kfm_writer(request: pytest.FixtureRequest, kfm_write_access: WriteAccess) -> ServiceHub:
    """Hub with write-capable stores; only for tests marked ``kfm_writable(*stores)``, only those stores."""
    marker = request.node.get_closest_marker("kfm_writable")
    if marker is None:
        pytest.fail(
            "kfm_writer refused: write access is blocked by default in check sessions. "
            "Mark the test with @pytest.mark.kfm_writable (or kfm_writable('postgis', ...)) if it must mutate a store.",
            pytrace=False,
        )
    return kfm_write_access.hub(*marker.args)

