"""OPA policy gate health: healthy, KFM bundle loaded, and fail-closed."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.stores.policy import Decision, ItemGate, PolicyStore

HINT_BUNDLE = "serve the bundle: opa run --server --bundle kfm_ops/contracts/policy (see docs/policy.md)"


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_policy_healthy(policy: PolicyStore) -> None:
    """OPA's /health answers 200."""
    status = policy.health()
    expect(status == 200, f"GET /health returned {status}", policy.where(), hint="check the OPA server log")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("policy:bundle")
def test_policy_bundle_loaded(policy: PolicyStore, kfm_contract: ContractLoader) -> None:
    """/health?bundles=true is 200 and the bundle's identity document (policy.json ``bundle``) names it."""
    where = policy.where()
    status = policy.health(bundles=True)
    expect(status == 200, f"GET /health?bundles=true returned {status}: a configured bundle is not activated", where,
           hint=HINT_BUNDLE)
    bundle = kfm_contract("policy")["bundle"]
    if bundle is None:
        return  # the contract says this bundle carries no identity document
    meta = policy.data(bundle["document"])
    name = meta.get("name") if isinstance(meta, dict) else None
    expect(name == bundle["name"], f"data.{bundle['document']} names bundle {name!r}, expected {bundle['name']!r}",
           where, hint=HINT_BUNDLE)


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("policy:item_gate.decision", "policy:item_gate.input", "policy:item_gate.allow",
                    "policy:item_gate.deny")
def test_policy_fail_closed(policy: PolicyStore, kfm_contract: ContractLoader) -> None:
    """The item gate (policy.json ``item_gate``) denies a malformed item, saying why, and a request without input."""
    gate = ItemGate.of(kfm_contract("policy"))
    malformed = policy.decide(gate, "garbage")
    cases = {
        "a malformed item ('garbage')": malformed,
        "no input": Decision.read(policy.data(gate.decision), gate.allow_key, gate.deny_key),
    }
    allowed = [case for case, decision in cases.items() if decision.allow]
    where = policy.where("data." + gate.decision.replace("/", "."))
    expect(not allowed, f"the gate is not fail-closed: {len(allowed)} malformed requests were allowed", where, allowed,
           hint="the deployed item gate must default to deny; redeploy the policy bundle")
    expect(malformed.deny, f"the gate denies a malformed item without a reason in its {gate.deny_key!r} answer", where,
           hint="a denial must say why (policy.json item_gate.deny names where the reasons are)")
