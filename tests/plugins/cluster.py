"""Beyond one node: a second OpenSearch node and a PostgreSQL standby, started by the tests that need them.

The default stack (and CI's ``devstack/stack up``) runs one of each. :func:`standby` starts a streaming
standby (``devstack/stack up postgis --postgis-standby``) for one test and stops it after.
:func:`two_node_search` makes OpenSearch two nodes
for one test module — ``devstack/stack up --opensearch-nodes 2`` — with a contract copy whose dev
topology is 2 primaries and 1 replica, and the live index rebuilt to it; afterwards it drains and stops
node 2, puts node 1 back to a single node and rebuilds the live index to the built-in contract.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from devstack.config import Stack, load_config
from devstack.services.postgis_standby import APPLICATION_NAME, PostgisStandby
from kfm_ops import contracts
from kfm_ops.settings import Settings
from tests.helpers import devstack, kfm_maint

PRIMARIES, REPLICAS = 2, 1  # the dev topology of the two-node tests' contract copy


@dataclass
class TwoNodes:
    """The two-node cluster of a test module: the env that points kfm-ops at its contract, and node 2."""

    env: dict[str, str]
    client: Any  # a write client on node 1

    def stop_node2(self) -> None:
        """Node 2 goes away (SIGTERM, no draining): its shard copies are lost to the cluster until it returns."""
        devstack("down", "opensearch-2")
        _wait(lambda: self.client.cluster.health()["number_of_nodes"] == 1, "node 2 to leave the cluster")

    def start_node2(self) -> None:
        devstack("up", "opensearch", "--opensearch-nodes", "2")
        _wait(lambda: self.client.cluster.health()["status"] == "green", "the two-node cluster to be green")

    def node2_id(self) -> str | None:
        """Node 2's id while it is in the cluster."""
        nodes = self.client.nodes.info()["nodes"]
        return next((i for i, n in nodes.items() if n.get("attributes", {}).get("kfm_node") == "node-2"), None)


def _wait(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _drain_node2(client: Any, node2: str) -> None:
    """Move off node 2 every shard copy that has no other started copy, before it stops: no index may lose its
    only copy with it (a copy with a twin on node 1 stays: it cannot move there, and losing it loses nothing)."""
    client.cluster.put_settings(body={"transient": {"cluster.routing.allocation.exclude.kfm_node": "node-2"}})

    def alone_on_node2() -> list[str]:
        rows = client.cat.shards(format="json", h="index,shard,state,id")
        elsewhere = {(r["index"], r["shard"]) for r in rows if r.get("id") != node2 and r["state"] == "STARTED"}
        return [f"{r['index']}[{r['shard']}]" for r in rows
                if r.get("id") == node2 and (r["index"], r["shard"]) not in elsewhere]

    _wait(lambda: not alone_on_node2(), "every shard copy on node 2 to have a started twin elsewhere")


def contract_copy(folder: Path) -> dict[str, str]:
    """A copy of the built-in contracts whose dev topology is 2 primaries and 1 replica; the env to use it."""
    target = folder / "contracts"
    shutil.copytree(contracts.BUILTIN, target)
    data = json.loads((target / "search.json").read_text())
    data["shards"]["dev"] = {"primaries": PRIMARIES, "replicas": REPLICAS}
    (target / "search.json").write_text(json.dumps(data))
    return {"KFM_CONTRACTS_DIR": str(target)}


@pytest.fixture(scope="module")
def two_node_search(tmp_path_factory: pytest.TempPathFactory, search_writer: Any, catalog: None) -> Iterator[TwoNodes]:
    """A two-node OpenSearch cluster for the module, the live index rebuilt to 2 primaries and 1 replica
    (``env`` carries the contract copy that says so); the one-node stack and its index restored after."""
    cluster = TwoNodes(env=contract_copy(tmp_path_factory.mktemp("two-nodes")), client=search_writer)
    try:
        cluster.start_node2()
        proc = kfm_maint("reindex", "--targets", "search", "--force", "--no-verify", env=cluster.env)
        assert proc.returncode == 0, f"the two-node rebuild failed:\n{proc.stdout}\n{proc.stderr}"
        yield cluster
    finally:
        node2 = cluster.node2_id()
        try:
            if node2:
                _drain_node2(search_writer, node2)
        finally:  # back to one node whatever happened
            devstack("up", "opensearch", "--opensearch-nodes", "1")
            search_writer.cluster.put_settings(body={"transient": {
                "cluster.routing.allocation.exclude.kfm_node": None}})
        # the live index back to the built-in topology; --keep 1 prunes the two-node indices (their replicas
        # can never be assigned on one node)
        proc = kfm_maint("reindex", "--targets", "search", "--force", "--keep", "1", "--no-verify")
        assert proc.returncode == 0, f"the one-node rebuild failed:\n{proc.stdout}\n{proc.stderr}"


@dataclass
class Standby:
    """The streaming standby of the stack under test: where it listens, and its superuser's psql."""

    service: PostgisStandby
    dsn: str  # the reader's DSN on the standby (KFM_POSTGIS__REPLICA_DSN)
    name: str = APPLICATION_NAME  # how the primary's pg_stat_replication names it

    @property
    def replica_env(self) -> dict[str, str]:
        """Settings that send kfm-ops's heavy reads to the standby."""
        return {"KFM_POSTGIS__REPLICA_DSN": self.dsn}

    def sql(self, statement: str) -> str:
        """``statement`` as the standby's superuser (peer, unix socket: as devstack does); its output."""
        res = self.service.psql_super(statement)
        assert res.returncode == 0, res.stderr
        return res.stdout

    def scalar(self, query: str) -> str:
        """The one value ``query`` returns on the standby, as text."""
        return self.sql(f"\\pset format unaligned\n\\pset tuples_only on\n{query};").strip()

    def pause(self) -> None:
        """Stop WAL replay: the standby keeps receiving WAL but applies none of it."""
        self.sql("SELECT pg_wal_replay_pause();")

    def resume(self) -> None:
        self.sql("SELECT pg_wal_replay_resume();")

    def catch_up(self, primary: Any) -> None:
        """Wait until the standby has replayed everything ``primary`` (a PostgisStore) has written so far."""
        position = primary.scalar("SELECT pg_current_wal_insert_lsn()::text")
        _wait(lambda: self.scalar(f"SELECT pg_last_wal_replay_lsn() >= '{position}'::pg_lsn") == "t",
              "the standby to replay what the primary wrote", timeout=30)

    def replayed_at(self, password: str) -> Any:
        """The commit time of the last transaction the standby replayed."""
        with psycopg.connect(self.dsn, password=password, autocommit=True) as conn:
            return conn.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()[0]  # type: ignore[index]


@pytest.fixture
def standby(kfm_settings: Settings) -> Iterator[Standby]:
    """A streaming standby of the stack's PostgreSQL for this test (``up --postgis-standby``), stopped after."""
    section = kfm_settings.postgis
    assert section is not None
    devstack("up", "postgis", "--postgis-standby")
    service = PostgisStandby(Stack(load_config()))
    parts = urlsplit(section.dsn)
    dsn = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{service.port}"))
    found = Standby(service, dsn)
    try:
        yield found
    finally:
        with contextlib.suppress(AssertionError):
            found.resume()
        devstack("down", "postgis-standby")


@contextlib.contextmanager
def committing(conn: Any, every: float = 0.2) -> Iterator[None]:
    """Commits on the primary in the background (each ``SELECT txid_current()`` writes a commit record): WAL
    keeps flowing to a standby while a test watches what it does with it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            conn.execute("SELECT txid_current()")
            stop.wait(every)

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(10)
