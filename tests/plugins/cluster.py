"""Beyond one node: the second OpenSearch node, started by the tests that need it and stopped after.

The default stack (and CI's ``devstack/stack up``) runs one node. :func:`two_node_search` makes it two
for one test module — ``devstack/stack up --opensearch-nodes 2`` — with a contract copy whose dev
topology is 2 primaries and 1 replica, and the live index rebuilt to it; afterwards it drains and stops
node 2, puts node 1 back to a single node and rebuilds the live index to the built-in contract.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kfm_ops import contracts
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

