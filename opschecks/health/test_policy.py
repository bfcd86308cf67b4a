"""OPA policy gate health: healthy, KFM bundle loaded, and fail-closed."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.stores.policy import PolicyStore

BUNDLE_NAME = "kfm"
DECISION = "kfm.stac.decision"
HINT_BUNDLE = "serve the bundle: opa run --server --bundle kfm_ops/contracts/policy (see docs/policy.md)"


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_policy_healthy(policy: PolicyStore) -> None:
    """OPA's /health answers 200."""
    status = policy.health()
    expect(status == 200, f"GET /health returned {status}", policy.where(), hint="check the OPA server log")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_policy_bundle_loaded(policy: PolicyStore) -> None:
    """/health?bundles=true is 200 and data.kfm.meta.bundle names the KFM bundle."""
    where = policy.where()
    status = policy.health(bundles=True)
    expect(status == 200, f"GET /health?bundles=true returned {status}: a configured bundle is not activated", where,
           hint=HINT_BUNDLE)
    meta = policy.data("kfm.meta.bundle")
    name = meta.get("name") if isinstance(meta, dict) else None
    expect(name == BUNDLE_NAME, f"data.kfm.meta.bundle names bundle {name!r}, expected {BUNDLE_NAME!r}", where,
           hint=HINT_BUNDLE)


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_policy_fail_closed(policy: PolicyStore) -> None:
    """data.kfm.stac.decision denies a malformed item and a request without input (fail-closed)."""
    cases = {
        "malformed input {'item': 'garbage'}": policy.data(DECISION, {"item": "garbage"}),
        "no input": policy.data(DECISION),
    }
    allowed = {case: decision for case, decision in cases.items()
               if (decision.get("allow") if isinstance(decision, dict) else decision) is not False}
    expect(not allowed, f"the gate is not fail-closed: {len(allowed)} malformed requests were not denied "
           f"(decisions {allowed!r})", policy.where(f"data.{DECISION}"), list(allowed),
           hint="the deployed kfm.stac policy must default to deny; redeploy the KFM bundle")
