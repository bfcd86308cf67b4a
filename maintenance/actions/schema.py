"""``kfm-maint migrate``: apply the kfm-ops schema migrations and set the environment marker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfm_ops.hub import ServiceHub
from maintenance import migrate
from maintenance.action import Plan, RunContext


@dataclass
class MigratePlan:
    pending: list[str]
    set_marker: bool


class Migrate:
    name = "migrate"
    stores = ("canonical",)
    bootstraps_schema = True
    verify_markers = "postgis and contract"  # what a migration changes: the schema the contract describes

    def plan(self, hub: ServiceHub) -> Plan[MigratePlan]:
        conn = hub.postgis()
        pending = [p.name for p in migrate.pending(conn, hub.settings.contracts_dir)]
        set_marker = conn.environment_marker() is None
        return Plan(
            what="apply pending schema migrations" + (" and set the environment marker" if set_marker else ""),
            where=[f"{conn.where()}: kfm, kfm_ops, kfm_cache, kfm_auth"],
            how_much={"migrations": len(pending)},
            rollback="migrations are additive (CREATE … IF NOT EXISTS); restore from backup to undo",
            steps=pending + (["set kfm_ops.environment"] if set_marker else []),
            details=MigratePlan(pending, set_marker),
            nothing_to_do=not pending and not set_marker,
        )

    def apply(self, hub: ServiceHub, plan: Plan[MigratePlan], run: RunContext) -> dict[str, Any]:
        conn = hub.postgis(write=True)
        migrate.apply(conn, hub.settings.contracts_dir)  # the runner may have bootstrapped them already
        marker = conn.execute(
            "INSERT INTO kfm_ops.environment (name) VALUES (%s) ON CONFLICT (singleton) DO NOTHING",
            (hub.settings.environment,),
        ).rowcount
        return {"migrations_applied": len(plan.details.pending), "marker_set": marker}
