"""The cluster as nodes and shard copies: who holds what, what is unassigned and why, heap pressure.

Messages name a node by its name and transport address: node names need not be unique (the local
runner calls every node "Node 1"), the address is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch


@dataclass(frozen=True)
class Shard:
    """One shard copy as ``_cat/shards`` lists it."""

    index: str
    shard: int
    primary: bool
    state: str
    node: str  # the node's id ("" when unassigned)
    reason: str  # why it is unassigned (NODE_LEFT, INDEX_CREATED, …), "" when assigned

    def label(self) -> str:
        kind = "primary" if self.primary else "replica"
        return f"{self.index}[{self.shard}] {kind}" + (f" ({self.reason})" if self.reason else "")


def node_labels(client: OpenSearch) -> dict[str, str]:
    """node id -> "name (transport address)"."""
    nodes = client.nodes.info(metric="transport")["nodes"]
    return {node_id: f"{n['name']} ({n.get('transport_address', '?')})" for node_id, n in nodes.items()}


def shards(client: OpenSearch, index: str | None = None) -> list[Shard]:
    """Every shard copy (of ``index``, or of all indices)."""
    rows = client.cat.shards(index=index, format="json", h="index,shard,prirep,state,id,unassigned.reason")
    return [Shard(r["index"], int(r["shard"]), r["prirep"] == "p", r["state"], r.get("id") or "",
                  r.get("unassigned.reason") or "") for r in rows]


def unassigned(found: list[Shard], *, primary: bool) -> list[Shard]:
    return sorted((s for s in found if s.state == "UNASSIGNED" and s.primary == primary),
                  key=lambda s: (s.index, s.shard))


def explain(client: OpenSearch, shard: Shard) -> str:
    """The cluster's own words on why ``shard`` is not allocated (the first decider that says no)."""
    answer = client.cluster.allocation_explain(body={"index": shard.index, "shard": shard.shard,
                                                     "primary": shard.primary})
    for decision in answer.get("node_allocation_decisions") or []:
        for decider in decision.get("deciders") or []:
            if decider.get("decision") == "NO":
                return f"{decider.get('decider')}: {decider.get('explanation')}"
    return str(answer.get("allocate_explanation") or answer.get("unassigned_info", {}).get("reason") or "unknown")


def data_nodes(client: OpenSearch) -> int:
    return int(client.cluster.health()["number_of_data_nodes"])


def heap_pressure(client: OpenSearch) -> dict[str, float]:
    """node label -> the old generation's share of its heap (what a node keeps after collections; the
    whole heap's share where the collector reports no old pool)."""
    labels = node_labels(client)
    found = {}
    for node_id, node in client.nodes.stats(metric="jvm")["nodes"].items():
        mem = node["jvm"]["mem"]
        old = mem.get("pools", {}).get("old", {})
        ratio = (old["used_in_bytes"] / old["max_in_bytes"] if old.get("max_in_bytes")
                 else mem["heap_used_percent"] / 100)
        found[labels.get(node_id, node.get("name", node_id))] = ratio
    return found


def wait_green(client: OpenSearch, index: str, timeout: float, *, between: Callable[[], None],
               poll: float = 1.0) -> list[Shard]:
    """Wait until every shard copy of ``index`` is started, up to ``timeout`` seconds; ``between()`` runs
    between polls (a lock check). Returns the copies still not started ([] once green)."""
    deadline = time.monotonic() + timeout
    while True:
        if client.cluster.health(index=index)["status"] == "green":
            return []
        if time.monotonic() >= deadline:
            return [s for s in shards(client, index) if s.state != "STARTED"]
        between()
        time.sleep(min(poll, max(deadline - time.monotonic(), 0)))


def set_replicas(client: OpenSearch, index: str, replicas: int) -> None:
    client.indices.put_settings(index=index, body={"index": {"number_of_replicas": replicas}})


def topology(client: OpenSearch, index: str) -> tuple[int, int]:
    """(primaries, replicas) of ``index``."""
    body: dict[str, Any] = client.indices.get_settings(index=index, name="index.number_of_*", flat_settings=True)
    settings = body[index]["settings"]
    return int(settings["index.number_of_shards"]), int(settings["index.number_of_replicas"])
