"""OPA policy gate health: healthy, KFM bundle loaded, and fail-closed."""

from __future__ import annotations

from typing import Any

import pytest

from kfm_ops.checks_support import call, expect

BUNDLE_NAME = "kfm"
DECISION = "kfm.stac.decision"
HINT_BUNDLE = "serve the bundle: opa run --server --bundle kfm_ops/contracts/policy (see docs/policy.md)"


def _where(kfm_settings: Any) -> str:
    return f"opa {kfm_settings.policy.where}"


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_policy_healthy(policy: Any, kfm_settings: Any) -> None:
    """OPA's /health answers 200."""
    where = _where(kfm_settings)
    response = call("GET /health failed", where, policy.health)
    expect(response.status_code == 200, f"GET /health returned {response.status_code}", where,
           hint="check the OPA server log")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_policy_bundle_loaded(policy: Any, kfm_settings: Any) -> None:
    """/health?bundles=true is 200 and data.kfm.meta.bundle names the KFM bundle."""
    where = _where(kfm_settings)
    response = call("GET /health?bundles=true failed", where, policy.health, bundles=True)
    expect(response.status_code == 200, f"GET /health?bundles=true returned {response.status_code}: "
           "a configured bundle is not activated", where, hint=HINT_BUNDLE)
    meta = call("data.kfm.meta.bundle is not readable", where, policy.data, "kfm.meta.bundle", hint=HINT_BUNDLE)
    name = meta.get("name") if isinstance(meta, dict) else None
    expect(name == BUNDLE_NAME, f"data.kfm.meta.bundle names bundle {name!r}, expected {BUNDLE_NAME!r}", where,
           hint=HINT_BUNDLE)


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_policy_fail_closed(policy: Any, kfm_settings: Any) -> None:
    """data.kfm.stac.decision denies a malformed item and a request without input (fail-closed)."""
    where = f"{_where(kfm_settings)} data.{DECISION}"
    cases = {
        "malformed input {'item': 'garbage'}": call("decision failed", where, policy.data, DECISION,
                                                    {"item": "garbage"}, hint=HINT_BUNDLE),
        "no input": call("decision failed", where, policy.data, DECISION, hint=HINT_BUNDLE),
    }
    allowed = {case: decision for case, decision in cases.items()
               if (decision.get("allow") if isinstance(decision, dict) else decision) is not False}
    expect(not allowed, f"the gate is not fail-closed: {len(allowed)} malformed requests were not denied "
           f"(decisions {allowed!r})", where, list(allowed),
           hint="the deployed kfm.stac policy must default to deny; redeploy the KFM bundle")
