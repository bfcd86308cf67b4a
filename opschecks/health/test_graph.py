"""Neo4j health: version, database online, contract constraints present with ONLINE indexes."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect, version_tuple
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.stores.graph import NEO4J_MAJOR, GraphStore


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_graph_version(graph: GraphStore) -> None:
    """dbms.components() answers and reports a Neo4j Kernel of the contract's major version (5.x)."""
    where = graph.where()
    rows = graph.run("CALL dbms.components() YIELD name, versions RETURN name, versions")
    kernel = [r for r in rows if r["name"] == "Neo4j Kernel"]
    expect(kernel, f"dbms.components() lists no Neo4j Kernel (got {[r['name'] for r in rows]})", where)
    version = kernel[0]["versions"][0]
    expect(version_tuple(version)[0] == NEO4J_MAJOR,
           f"Neo4j {version} is not a {NEO4J_MAJOR}.x release", where,
           hint=f"the graph contract is written for Neo4j {NEO4J_MAJOR}.x")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_graph_database_online(graph: GraphStore) -> None:
    """The configured database exists and SHOW DATABASE reports it online (current and requested)."""
    where = graph.where()
    name = graph.database
    rows = graph.run("SHOW DATABASE $name YIELD name, currentStatus, requestedStatus, statusMessage "
                     "RETURN name, currentStatus, requestedStatus, statusMessage", name=name)
    expect(rows, f"database {name!r} does not exist", where,
           hint="create it, or fix KFM_GRAPH__DATABASE; then `kfm-maint reindex --targets graph`")
    bad = [f"{r['name']} ({r['currentStatus']}/{r['requestedStatus']}: {r['statusMessage'] or '-'})"
           for r in rows if r["currentStatus"] != "online" or r["requestedStatus"] != "online"]
    expect(not bad, f"database {name!r} is not online", where, bad,
           hint=f"START DATABASE {name} (on the system database); check the Neo4j log")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("graph:constraint:*")
def test_graph_constraints_online(graph: GraphStore, kfm_contract: ContractLoader) -> None:
    """Every graph.json constraint exists and its backing index is ONLINE (not FAILED / POPULATING)."""
    where = graph.where()
    wanted = kfm_contract("graph")["constraints"]
    constraints = {r["name"]: r for r in graph.run("SHOW CONSTRAINTS YIELD name, ownedIndex RETURN name, ownedIndex")}
    indexes = {r["name"]: r for r in graph.run("SHOW INDEXES YIELD name, state, populationPercent "
                                               "RETURN name, state, populationPercent")}
    missing = [c["name"] for c in wanted if c["name"] not in constraints]
    expect(not missing, f"{len(missing)} contract constraints are missing", where, missing,
           hint="run `kfm-maint reindex --targets graph` (creates the graph.json constraints)")
    not_online = []
    for c in wanted:
        owned = constraints[c["name"]]["ownedIndex"]
        index = indexes.get(owned) if owned else None
        if index is None:
            not_online.append(f"{c['name']} (no backing index)")
        elif index["state"] != "ONLINE":
            not_online.append(f"{c['name']} (index {owned} {index['state']}, {index['populationPercent']}%)")
    expect(not not_online, f"{len(not_online)} contract constraints have an index that is not ONLINE", where,
           not_online,
           hint="a FAILED index: drop the constraint and run `kfm-maint reindex --targets graph`; "
           "POPULATING: wait, then re-run")
