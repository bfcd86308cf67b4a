"""The graph's constraints match graph.json: each contract constraint has the contract's label, property and type."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.stores.graph import GraphStore

REINDEX_HINT = "run `kfm-maint reindex --targets graph` (creates the graph.json constraints)"


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("graph:constraint:*")
def test_graph_constraints_match_contract(graph: GraphStore, kfm_contract: ContractLoader) -> None:
    """Each graph.json constraint exists with its label, property and type; contract labels have no others."""
    contract = kfm_contract("graph")
    rows = graph.run("SHOW CONSTRAINTS YIELD name, type, entityType, labelsOrTypes, properties "
                     "RETURN name, type, entityType, labelsOrTypes, properties")
    live = {r["name"]: r for r in rows}
    problems: list[str] = []
    for c in contract["constraints"]:
        wanted = f"{c['type']} on :{c['label']}({c['property']})"
        row = live.get(c["name"])
        if row is None:
            problems.append(f"{c['name']} (missing; contract {wanted})")
            continue
        have = f"{row['type']} on :{','.join(row['labelsOrTypes'] or [])}({','.join(row['properties'] or [])})"
        if row["entityType"] != "NODE" or have != wanted:
            problems.append(f"{c['name']} ({have}, contract {wanted})")
    names = {c["name"] for c in contract["constraints"]}
    labels = set(contract["labels"])
    stray = sorted(f"{r['name']} ({r['type']} on :{','.join(r['labelsOrTypes'] or [])}"
                   f"({','.join(r['properties'] or [])}))" for r in rows
                   if r["name"] not in names and set(r["labelsOrTypes"] or []) & labels)
    problems += [f"{s} (not in contract)" for s in stray]
    expect(not problems, f"{len(problems)} graph constraints differ from graph.json", graph.where(), problems,
           hint=REINDEX_HINT)


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("graph:index:*")
def test_graph_indexes_match_contract(graph: GraphStore, kfm_contract: ContractLoader) -> None:
    """Each graph.json index exists on its label and property, ONLINE (the sync finds changed buckets by it)."""
    live = {r["name"]: r for r in graph.run("SHOW INDEXES YIELD name, entityType, labelsOrTypes, properties, state "
                                           "RETURN name, entityType, labelsOrTypes, properties, state")}
    problems = []
    for index in kfm_contract("graph")["indexes"]:
        wanted = f":{index['label']}({index['property']})"
        row = live.get(index["name"])
        if row is None:
            problems.append(f"{index['name']} (missing; contract {wanted})")
            continue
        have = f":{','.join(row['labelsOrTypes'] or [])}({','.join(row['properties'] or [])})"
        if row["entityType"] != "NODE" or have != wanted or row["state"] != "ONLINE":
            problems.append(f"{index['name']} ({have} {row['state']}, contract {wanted} ONLINE)")
    expect(not problems, f"{len(problems)} graph indexes differ from graph.json", graph.where(), problems,
           hint=REINDEX_HINT.replace("constraints", "constraints and indexes"))


@pytest.mark.risk("medium")
@pytest.mark.covers("graph:relationship:*")
def test_graph_relationships_match_contract(graph: GraphStore, kfm_contract: ContractLoader) -> None:
    """Every relationship between contract labels is of a graph.json type, from its label to its label."""
    contract = kfm_contract("graph")
    labels = sorted(contract["labels"])
    known = {rel: (spec["from"], spec["to"]) for rel, spec in contract["relationships"].items()}
    rows = graph.run("MATCH (a)-[r]->(b) WHERE any(l IN labels(a) WHERE l IN $labels) "
                     "RETURN type(r) AS rel, labels(a) AS a, labels(b) AS b, count(*) AS n", labels=labels)
    problems = []
    for row in rows:
        wanted = known.get(row["rel"])
        if wanted is None:
            problems.append(f"{row['n']} :{row['rel']} from :{','.join(row['a'])} (not in graph.json)")
        elif wanted[0] not in row["a"] or wanted[1] not in row["b"]:
            problems.append(f"{row['n']} :{row['rel']} from :{','.join(row['a'])} to :{','.join(row['b'])} "
                            f"(graph.json: {wanted[0]} -> {wanted[1]})")
    expect(not problems, f"{len(problems)} kinds of relationship differ from graph.json", graph.where(), problems,
           hint="kfm-maint reindex --targets graph --prune (the sync writes only contract relationships)")
