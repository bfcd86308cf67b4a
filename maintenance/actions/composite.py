"""Several actions run as one: one plan, one lock set, one ledger row, one verification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfm_ops.hub import ServiceHub
from maintenance.runner import Action, Plan


class Composite:
    def __init__(self, name: str, parts: list[Action]) -> None:
        self.name = name
        self.parts = parts
        self.stores = tuple(sorted({s for p in parts for s in p.stores}))
        self.verify_markers = " or ".join(f"({p.verify_markers})" for p in parts if p.verify_markers)
        self._plans: list[Plan] = []

    def plan(self, hub: ServiceHub) -> Plan:
        self._plans = [p.plan(hub) for p in self.parts]
        return Plan(
            what="; ".join(p.what for p in self._plans),
            where=[w for p in self._plans for w in p.where],
            how_much={f"{a.name}.{k}": v for a, p in zip(self.parts, self._plans, strict=True)
                      for k, v in p.how_much.items()},
            rollback=" | ".join(p.rollback for p in self._plans),
            steps=[f"{a.name}: {s}" for a, p in zip(self.parts, self._plans, strict=True) for s in p.steps],
            details={"parts": [p.as_dict() for p in self._plans],
                     "nothing_to_do": all(p.nothing_to_do for p in self._plans)},
        )

    def apply(self, hub: ServiceHub, plan: Plan, progress: Callable[[str, int, int | None], None]) -> dict[str, Any]:
        return {a.name: a.apply(hub, p, progress) for a, p in zip(self.parts, self._plans, strict=True)}
