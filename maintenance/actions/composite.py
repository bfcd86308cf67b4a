"""Several actions run as one: one plan, one lock set, one ledger row, one verification."""

from __future__ import annotations

from typing import Any

from kfm_ops.hub import ServiceHub
from maintenance.action import Action, Plan, RunContext


class Composite:
    bootstraps_schema = False

    def __init__(self, name: str, parts: list[Action[Any]]) -> None:
        self.name = name
        self.parts = parts
        self.stores = tuple(sorted({s for p in parts for s in p.stores}))
        self.derived = tuple(sorted({s for p in parts for s in p.derived}))
        self.verify_markers = " or ".join(f"({p.verify_markers})" for p in parts if p.verify_markers)

    def plan(self, hub: ServiceHub) -> Plan[list[Plan[Any]]]:
        plans = [p.plan(hub) for p in self.parts]
        return Plan(
            what="; ".join(p.what for p in plans),
            where=[w for p in plans for w in p.where],
            how_much={f"{a.name}.{k}": v for a, p in zip(self.parts, plans, strict=True)
                      for k, v in p.how_much.items()},
            rollback=" | ".join(p.rollback for p in plans),
            steps=[f"{a.name}: {s}" for a, p in zip(self.parts, plans, strict=True) for s in p.steps],
            details=plans,
            nothing_to_do=all(p.nothing_to_do for p in plans),
        )

    def apply(self, hub: ServiceHub, plan: Plan[list[Plan[Any]]], run: RunContext) -> dict[str, Any]:
        return {a.name: a.apply(hub, p, run) for a, p in zip(self.parts, plan.details, strict=True)}
