"""``kfm-maint migrate``: apply the kfm-ops schema migrations; stamp an unstamped database, explicitly.

A database without a deployment stamp is stamped only by ``kfm-maint migrate --environment X``
(the gate refuses it without the flag, and production needs ``--confirm PRODUCTION``): a new
deployment id and the environment go into ``kfm_ops.environment``. An existing stamp is never
changed here (``kfm-maint identity environment`` does that, confirmed and ledgered).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from kfm_ops.hub import ServiceHub
from maintenance import migrate
from maintenance.action import Plan, RunContext


@dataclass
class MigratePlan:
    pending: list[str]
    stamp: dict[str, str] | None  # the identity an unstamped database gets


class Migrate:
    name = "migrate"
    stores = ("canonical",)
    derived: tuple[str, ...] = ()
    bootstraps_schema = True
    verify_markers = "postgis and contract"  # what a migration changes: the schema the contract describes

    def plan(self, hub: ServiceHub) -> Plan[MigratePlan]:
        conn = hub.postgis()
        pending = [p.name for p in migrate.pending(conn, hub.settings.contracts_dir)]
        stamp = None
        if conn.identity() is None:  # the gate let us here only with --environment given explicitly
            stamp = {"environment": str(hub.settings.environment), "deployment_id": str(uuid.uuid4())}
        return Plan(
            what="apply pending schema migrations"
            + (f" and stamp the database as {stamp['environment']} deployment {stamp['deployment_id']}"
               if stamp else ""),
            where=[f"{conn.where()}: kfm, kfm_ops, kfm_cache, kfm_auth"],
            how_much={"migrations": len(pending)},
            rollback="migrations are additive (CREATE … IF NOT EXISTS); restore from backup to undo",
            steps=pending + (["stamp kfm_ops.environment (deployment id, environment)"] if stamp else []),
            details=MigratePlan(pending, stamp),
            nothing_to_do=not pending and not stamp,
        )

    def apply(self, hub: ServiceHub, plan: Plan[MigratePlan], run: RunContext) -> dict[str, Any]:
        conn = hub.postgis(write=True)
        applied = migrate.apply(conn, hub.settings.contracts_dir)  # the runner may have bootstrapped them already
        stamped = 0
        if plan.details.stamp:
            # A marker an older kfm-ops wrote (environment only, same name) gets its id; another name stays as it is.
            stamped = conn.execute(
                "INSERT INTO kfm_ops.environment AS e (name, deployment_id, stamped_by) VALUES (%s, %s, %s) "
                "ON CONFLICT (singleton) DO UPDATE SET deployment_id = excluded.deployment_id, "
                "stamped_by = excluded.stamped_by WHERE e.deployment_id IS NULL AND e.name = excluded.name",
                (plan.details.stamp["environment"], plan.details.stamp["deployment_id"], run.run_id)).rowcount
        return {"migrations_applied": len(applied), "stamped": stamped}
