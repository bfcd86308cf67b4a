"""The graph's constraints match graph.json: each contract constraint has the contract's label, property and type."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.stores.graph import GraphStore

REINDEX_HINT = "run `kfm-maint reindex --targets graph` (creates the graph.json constraints)"


@pytest.mark.smoke
@pytest.mark.risk("low")
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
