"""``kfm-maint migrate``: apply the canonical-schema migrations and set the environment marker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfm_ops import migrate
from kfm_ops.gates import database_environment
from kfm_ops.hub import ServiceHub
from maintenance.runner import Plan


def marker_missing(conn: Any) -> bool:
    return database_environment(conn) is None


class Migrate:
    name = "migrate"
    stores = ("canonical",)
    bootstraps_schema = True
    verify_markers = "postgis and not slow"

    def plan(self, hub: ServiceHub) -> Plan:
        conn = hub.client("postgis")
        pending = [p.name for p in migrate.pending(conn, hub.settings.contracts_dir)]
        set_marker = marker_missing(conn)
        return Plan(
            what="apply pending schema migrations" + (" and set the environment marker" if set_marker else ""),
            where=[f"postgis {hub.settings.postgis.where if hub.settings.postgis else '?'}: "
                   "kfm, kfm_ops, kfm_cache, kfm_auth"],
            how_much={"migrations": len(pending)},
            rollback="migrations are additive (CREATE … IF NOT EXISTS); restore from backup to undo",
            steps=pending + (["set kfm_ops.environment"] if set_marker else []),
            details={"pending": pending, "set_marker": set_marker, "nothing_to_do": not pending and not set_marker},
        )

    def apply(self, hub: ServiceHub, plan: Plan, progress: Callable[[str, int, int | None], None]) -> dict[str, Any]:
        conn = hub.writer("postgis")
        migrate.apply(conn, hub.settings.contracts_dir)  # the runner may have bootstrapped them already
        marker = conn.execute(
            "INSERT INTO kfm_ops.environment (name) VALUES (%s) ON CONFLICT (singleton) DO NOTHING",
            (hub.settings.environment,),
        ).rowcount
        return {"migrations_applied": len(plan.details["pending"]), "marker_set": marker}
