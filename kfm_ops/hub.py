"""The service hub: one lazily-opened store per service, shared by checks and actions.

Read stores are handed to anyone. Write stores only by a hub opened with
``writes_allowed`` (a kfm-maint action past its gates, not a dry run; or a test
marked ``kfm_writable``), and only for the services that hub was opened for —
mutation is blocked by default and the refusal names the way to unblock it.

Each service is warmed up once: the first use connects and pings within the
configured timeout; a failure is remembered, so every later use fails at once
with the same clear message instead of waiting out the timeout again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from kfm_ops import log
from kfm_ops.errors import ActionRefused, KfmError, NotConfigured, ServiceError
from kfm_ops.faults import TRANSIENT
from kfm_ops.settings import SERVICES, PostgisSettings, Settings
from kfm_ops.stores import Store, store_class

if TYPE_CHECKING:  # the stores import their drivers: only on first use
    from kfm_ops.stores.cache import CacheStore
    from kfm_ops.stores.graph import GraphStore
    from kfm_ops.stores.llm import LlmStore
    from kfm_ops.stores.policy import PolicyStore
    from kfm_ops.stores.postgis import PostgisStore
    from kfm_ops.stores.search import SearchStore

# The retry policy of a warm-up: a reset or dropped connection is tried again (a peer
# restarting, a load balancer recycling); refusals, timeouts and auth failures are not.
WARM_UP_ATTEMPTS = 3
RETRY_BACKOFF = 0.5  # seconds, times the attempt number


class ServiceHub:
    """Opens, warms up, shares and closes the stores of one session or run."""

    def __init__(self, settings: Settings, *, writes_allowed: bool = False, writable: Iterable[str] | None = None,
                 application_name: str = "kfm-ops", on_retry: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings
        self.on_retry = on_retry
        self.writes_allowed = writes_allowed
        self.writable = frozenset(SERVICES if writable is None else writable)
        self.application_name = application_name
        self._stores: dict[tuple[str, bool], Store[Any]] = {}
        self._failures: dict[tuple[str, bool], KfmError] = {}
        self._versions: dict[str, str] = {}
        self._extra: list[Store[Any]] = []  # stores opened outside the cache (fresh connections)
        self._owner: PostgisStore | None = None
        self._replica: PostgisStore | None = None
        self._lock = threading.Lock()

    def configured(self, name: str) -> bool:
        return self.settings.section(name) is not None

    # --- typed doors (read-only unless ``write``)
    def postgis(self, *, write: bool = False) -> PostgisStore:
        return cast("PostgisStore", self._open("postgis", write))

    def search(self, *, write: bool = False) -> SearchStore:
        return cast("SearchStore", self._open("search", write))

    def graph(self, *, write: bool = False) -> GraphStore:
        return cast("GraphStore", self._open("graph", write))

    def cache(self, *, write: bool = False) -> CacheStore:
        return cast("CacheStore", self._open("cache", write))

    def policy(self) -> PolicyStore:
        return cast("PolicyStore", self._open("policy", False))

    def llm(self) -> LlmStore:
        return cast("LlmStore", self._open("llm", False))

    def postgis_owner(self) -> PostgisStore:
        """The owner role in a read-only session (dry runs too): for what only the owner may read."""
        section = self.settings.postgis
        if section is None:
            raise NotConfigured("postgis")
        with self._lock:
            if self._owner is None:
                from kfm_ops.stores.postgis import PostgisStore

                self._owner = PostgisStore(section, owner=True, application_name=self.application_name)
                self._extra.append(self._owner)
            return self._owner

    def postgis_replica(self) -> PostgisStore | None:
        """The read replica (KFM_POSTGIS__REPLICA_DSN), its snapshots dated by the primary; None when none is set."""
        section = self.settings.postgis
        if section is None or not section.replica_dsn:
            return None
        primary = self.postgis()  # dates the replica's snapshots; opened first, outside the lock it takes
        with self._lock:
            if self._replica is None:
                replica = self._canonical_reader(section, primary)
                try:
                    replica.ping()
                except KfmError:
                    replica.close()
                    raise
                self._replica = replica
                self._extra.append(replica)
            return self._replica

    def canonical(self) -> PostgisStore:
        """Where heavy canonical reads go (streams, digests): the replica when one is configured, else the
        primary's read store. Control, locks, ledger, watermarks and dating lookups stay on the primary."""
        return self.postgis_replica() or self.postgis()

    def fresh_canonical(self) -> PostgisStore:
        """A new connection where canonical reads go (the replica when configured), not the shared one: a second
        reader, to join a snapshot the first exported."""
        section = self.settings.postgis
        if section is None:
            raise NotConfigured("postgis")
        store = self._canonical_reader(section, self.postgis() if section.replica_dsn else None)
        self._extra.append(store)
        return store

    def _canonical_reader(self, section: PostgisSettings, primary: PostgisStore | None) -> PostgisStore:
        """A new read connection where canonical reads go: the replica when ``primary`` (dating its snapshots) is
        given, else the primary's read role."""
        from kfm_ops.stores.postgis import PostgisStore

        return PostgisStore(section, primary=primary, application_name=self.application_name)

    def fresh_postgis_writer(self) -> PostgisStore:
        """A new write connection to the canonical store, not the shared one (for a retry after a drop)."""
        section = self.settings.postgis
        if section is None or not self.writes_allowed:
            raise ActionRefused("no write access to postgis in this session")
        from kfm_ops.stores.postgis import PostgisStore

        store = PostgisStore(section, write=True, application_name=self.application_name)
        self._extra.append(store)
        return store

    def _open(self, name: str, write: bool) -> Store[Any]:
        return self.writer(name) if write else self.client(name)

    # --- by name
    def client(self, name: str) -> Store[Any]:
        """The read-only store of service ``name``."""
        return self._get(name, write=False)

    def writer(self, name: str) -> Store[Any]:
        """A write-capable store; only for a hub opened by a confirmed action (or a writable test)."""
        if not self.writes_allowed or name not in self.writable:
            allowed = ", ".join(sorted(self.writable)) if self.writes_allowed else "none"
            raise ActionRefused(
                f"writes to {name} are blocked in this session (writable: {allowed})",
                hint="mutations run only through kfm-maint actions (without --dry-run); "
                "in tests, mark the test with @pytest.mark.kfm_writable"
                + (f"(..., {name!r})" if self.writes_allowed else ""),
            )
        return self._get(name, write=True)

    def _get(self, name: str, *, write: bool) -> Store[Any]:
        section = self.settings.section(name)
        if section is None:
            raise NotConfigured(name)
        key = (name, write)
        with self._lock:
            if key in self._failures:
                raise self._failures[key]
            if key in self._stores:
                return self._stores[key]
            try:
                store = self._warm_up(name, section, write=write)
            except KfmError as exc:
                self._failures[key] = exc
                raise
            self._stores[key] = store
            return store

    def _warm_up(self, name: str, section: Any, *, write: bool) -> Store[Any]:
        """Open and ping, retrying only transient faults (a reset or dropped connection)."""
        cls = store_class(name)
        kwargs = {"application_name": self.application_name} if name == "postgis" else {}
        for attempt in range(1, WARM_UP_ATTEMPTS + 1):
            store = None
            try:
                store = cls(section, write=write, **kwargs)
                store.ping()
                return store
            except ServiceError as exc:
                if store is not None:
                    with contextlib.suppress(Exception):  # best effort on a broken client
                        store.close()
                if attempt == WARM_UP_ATTEMPTS or exc.fault not in TRANSIENT:
                    raise
                log.get_logger().warning("service.retry", service=name, attempt=attempt, reason=exc.reason)
                if self.on_retry is not None:
                    self.on_retry(name, exc.reason)
                time.sleep(RETRY_BACKOFF * attempt)
        raise AssertionError("unreachable")  # pragma: no cover — the loop returns or raises

    def unavailable(self) -> list[str]:
        """Services that failed their warm-up in this process."""
        return sorted({name for (name, _write), error in self._failures.items() if isinstance(error, ServiceError)})

    def version(self, name: str) -> str:
        """The server version of ``name`` (warming it up if needed)."""
        if name not in self._versions:
            self._versions[name] = self.client(name).version()
        return self._versions[name]

    def probe(self, name: str) -> str:
        """The server version of ``name``, asked within its connect timeout (report headers).

        A throw-away read store whose query timeout is the connect timeout, one attempt: a
        server that accepts connections and never answers costs a header seconds, not the
        query timeout. Only the version is kept; the checks warm their stores up as usual.
        """
        if name in self._versions:
            return self._versions[name]
        section = self.settings.section(name)
        if section is None:
            raise NotConfigured(name)
        quick = section.model_copy(update={"query_timeout": section.connect_timeout})
        kwargs: dict[str, Any] = {}
        if name == "postgis":
            kwargs["application_name"] = self.application_name
        elif name == "graph":
            kwargs["retry"] = False  # one attempt: the driver would retry a failed handshake
        store = None
        try:
            store = store_class(name)(quick, write=False, **kwargs)
            version = store.version()
        finally:
            if store is not None:
                with contextlib.suppress(Exception):  # closing is best effort
                    store.close()
        self._versions[name] = version
        return version

    def answered(self, name: str) -> bool:
        """Whether ``name`` told its version in this process."""
        return name in self._versions

    def status(self, *, warm: bool = True) -> list[dict[str, Any]]:
        """Each service: configured, up (answered), its version, where, or why not (headers, reports, metrics).

        ``warm`` probes the configured services at the same time, each within its connect timeout
        (:meth:`probe`). ``warm=False`` connects to nothing: it tells what this hub has seen (a service
        it never opened has ``up`` None) — for the end of a session, when a service may be broken on purpose.
        """
        def row(name: str) -> dict[str, Any]:
            section = self.settings.section(name)
            found: dict[str, Any] = {"service": name, "configured": section is not None, "up": False,
                                     "version": None, "where": section.where if section else None, "error": None}
            failure = self._failures.get((name, False))
            if section is not None and not warm and name not in self._versions:
                opened = (name, False) in self._stores or (name, True) in self._stores
                found.update(up=True if opened else (False if failure else None),
                             error=failure.message if failure and not opened else None)
            elif section is not None:
                try:
                    found.update(up=True, version=self.probe(name))
                except ServiceError as exc:
                    found["error"] = exc.message
                except KfmError as exc:  # not a service fault, but no answer either (a setting, a driver)
                    found["error"] = f"version unknown ({exc.message})"
            return found

        with ThreadPoolExecutor(max_workers=len(SERVICES), thread_name_prefix="kfm-probe") as pool:
            return list(pool.map(row, SERVICES))

    def status_lines(self) -> list[str]:
        """One line per service for report headers: version, not configured, or unreachable."""
        lines = []
        for row in self.status():
            name = row["service"]
            if not row["configured"]:
                lines.append(f"{name}: not configured")
            elif row["version"]:
                lines.append(f"{name}: {row['version']} at {row['where']}")
            elif str(row["error"]).startswith("version unknown"):
                lines.append(f"{name}: {row['error']}")
            else:
                lines.append(f"{name}: UNAVAILABLE — {row['error']}")
        return lines

    def close(self) -> None:
        with self._lock:
            for store in [*self._stores.values(), *self._extra]:
                with contextlib.suppress(Exception):  # closing is best effort
                    store.close()
            self._stores.clear()
            self._extra.clear()
            self._owner = None
            self._replica = None
