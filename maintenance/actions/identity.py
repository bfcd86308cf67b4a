"""``kfm-maint identity …``: copy the canonical deployment stamp into derived stores, or change its environment.

``identity stamp --targets search,graph,cache`` is the explicit bootstrap of a derived store:
it writes the canonical database's stamp (deployment id, environment) into each target that
has none; a target stamped by another deployment is refused unless ``--replace`` (a store
rebuilt for this deployment). ``identity environment --to X`` changes the canonical stamp's
environment (promoting staging, say) — a separate, ledgered step, with ``--confirm PRODUCTION``
whenever production is on either side; the derived stores must then be stamped again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfm_ops import contracts
from kfm_ops.errors import ActionRefused
from kfm_ops.hub import ServiceHub
from kfm_ops.identity import DERIVED, Identity, read
from maintenance.action import Plan, RunContext
from maintenance.gates import CONFIRM_WORD


@dataclass
class StampPlan:
    identity: dict[str, str]
    targets: dict[str, str]  # target -> "stamp" / "replace" / "current"


class IdentityStamp:
    name = "identity-stamp"
    derived: tuple[str, ...] = ()  # it compares the targets itself: unstamped is its job
    bootstraps_schema = False
    verify_markers = "contract and (search or graph or cache)"

    def __init__(self, *, targets: list[str], replace: bool = False) -> None:
        self.targets = targets
        self.stores = tuple(targets)
        self.replace = replace

    def plan(self, hub: ServiceHub) -> Plan[StampPlan]:
        canonical = hub.postgis().identity()
        if canonical is None:
            raise ActionRefused("the canonical database carries no deployment identity",
                                hint="stamp it first: kfm-maint migrate --environment <env>")
        todo: dict[str, str] = {}
        for target in self.targets:
            found = read(hub, target)
            if found == canonical:
                todo[target] = "current"
            elif found is None:
                todo[target] = "stamp"
            elif self.replace:
                todo[target] = "replace"
            else:
                raise ActionRefused(f"{target} belongs to {found}, not to {canonical}",
                                    hint="if it was rebuilt for this deployment, add --replace; otherwise fix the "
                                    f"KFM_{target.upper()}__* settings")
        changing = [t for t, what in todo.items() if what != "current"]
        return Plan(what=f"stamp {', '.join(changing) or 'nothing'} as {canonical}",
                    where=[f"{t}: {todo[t]}" for t in self.targets], how_much={"stores": len(changing)},
                    rollback="stamps are metadata: stamp again with --replace",
                    steps=[f"{todo[t]} the {t} stamp" for t in changing],
                    details=StampPlan(canonical.as_fields(), todo), nothing_to_do=not changing)

    def apply(self, hub: ServiceHub, plan: Plan[StampPlan], run: RunContext) -> dict[str, Any]:
        identity = Identity(**plan.details.identity)
        folder = hub.settings.contracts_dir
        for target, what in plan.details.targets.items():
            if what == "current":
                continue
            if target == "search":
                hub.search(write=True).stamp(contracts.load("search", folder)["identity_index"], identity, run.run_id)
            elif target == "graph":
                hub.graph(write=True).stamp(contracts.load("graph", folder)["identity_label"], identity, run.run_id)
            else:
                hub.cache(write=True).stamp(contracts.load("cache", folder)["redis"]["identity_key"], identity,
                                            run.run_id)
        return {"stamped": sum(what != "current" for what in plan.details.targets.values())}


@dataclass
class EnvironmentPlan:
    deployment_id: str
    old: str
    new: str


class IdentityEnvironment:
    name = "identity-environment"
    stores = ("canonical",)
    derived: tuple[str, ...] = ()
    bootstraps_schema = False
    verify_markers = ""

    def __init__(self, *, to: str, confirm: str = "") -> None:
        self.to = to
        self.confirm = confirm

    def plan(self, hub: ServiceHub) -> Plan[EnvironmentPlan]:
        canonical = hub.postgis().identity()
        assert canonical is not None  # the runner refuses an unstamped database first
        old = canonical.environment
        if "production" in (old, self.to) and self.confirm != CONFIRM_WORD:
            raise ActionRefused(f"changing the environment {old} → {self.to} involves production",
                                hint=f"re-run with --confirm {CONFIRM_WORD} (and --environment {old})")
        same = old == self.to
        restamp = f"then: kfm-maint identity stamp --targets {','.join(DERIVED)} --replace (their stamps name {old})"
        return Plan(what=f"change the canonical database's environment {old} → {self.to}",
                    where=[f"{hub.postgis().where()}: kfm_ops.environment"], how_much={"stamps": 0 if same else 1},
                    rollback=f"kfm-maint identity environment --to {old}",
                    steps=[] if same else ["update kfm_ops.environment", restamp],
                    details=EnvironmentPlan(canonical.deployment_id, canonical.environment, self.to),
                    nothing_to_do=same)

    def apply(self, hub: ServiceHub, plan: Plan[EnvironmentPlan], run: RunContext) -> dict[str, Any]:
        if plan.nothing_to_do:
            return {"changed": 0}
        changed = hub.postgis(write=True).execute(
            "UPDATE kfm_ops.environment SET name = %s, stamped_by = %s, set_at = now() "
            "WHERE deployment_id = %s AND name = %s",
            (plan.details.new, run.run_id, plan.details.deployment_id, plan.details.old)).rowcount
        return {"changed": changed, "from": plan.details.old, "to": plan.details.new}
