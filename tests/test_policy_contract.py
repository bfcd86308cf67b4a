"""The policy checks read where and how the gate decides from policy.json, so a bundle written another way is
checked by configuration only: docs/examples/policy-v0 (Rego v0 served with --v0-compatible, package
kfm.catalog.stac, a ``deny`` set and an ``allow`` rule over the bare STAC item, no batch, no identity document)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import ROOT, run_checks
from tests.plugins.faults import injected
from tests.proving import assert_fails

pytestmark = pytest.mark.devstack

V0 = ROOT / "docs" / "examples" / "policy-v0"
GATE = "opschecks/governance/test_publication.py::test_published_items_pass_stac_gate"
FAIL_CLOSED = "opschecks/health/test_policy.py::test_policy_fail_closed"
POLICY_CHECKS = ("opschecks/health/test_policy.py", "opschecks/governance")


def _v0_env(start: Any, contracts_copy: Any, **replace: str) -> dict[str, str]:
    files = {p.name: p.read_text() for p in V0.glob("*.rego")}
    files.update(replace)
    url = start(files, v0=True)
    contract = json.loads((V0 / "policy.json").read_text())
    return {**contracts_copy("policy", lambda c: (c.clear(), c.update(contract))), "KFM_POLICY__URL": url}


def test_the_policy_and_governance_checks_pass_on_a_v0_bundle(scratch_opa: Any, contracts_copy: Any) -> None:
    results = run_checks(*POLICY_CHECKS, env=_v0_env(scratch_opa, contracts_copy))
    failed = {n: r.message[:300] for n, r in results.items() if r.outcome != "passed"}
    assert not failed, failed
    assert GATE in results and FAIL_CLOSED in results  # the gate was evaluated item by item, not skipped


def test_the_v0_gate_denies_a_published_item_and_the_check_names_it(scratch_opa: Any, contracts_copy: Any,
                                                                       pg_baseline: Any) -> None:
    env = _v0_env(scratch_opa, contracts_copy)
    item = pg_baseline.scalar("SELECT id FROM kfm_ops.published_items ORDER BY id LIMIT 1")
    stac = pg_baseline.scalar("SELECT stac FROM kfm.items WHERE id = %s", (item,))
    with injected(lambda: pg_baseline.execute(
            "UPDATE kfm.items SET stac = jsonb_set(stac, '{assets,data,href}', '\"s3://kfm/raw/x.tif\"') "
            "WHERE id = %s", (item,)),
            lambda: pg_baseline.execute("UPDATE kfm.items SET stac = %s WHERE id = %s", (json.dumps(stac), item))):
        assert_fails(GATE, "1 of", "fail the STAC gate", "raw/work/quarantine", item, "data.kfm.catalog.stac",
                     env=env)


def test_a_v0_bundle_that_allows_everything_is_not_fail_closed(scratch_opa: Any, contracts_copy: Any) -> None:
    lax = (V0 / "catalog_stac.rego").read_text().replace("allow {\n\tis_object(input)\n\tcount(deny) == 0\n}",
                                                          "allow { true }")
    assert "allow { true }" in lax
    env = _v0_env(scratch_opa, contracts_copy, **{"catalog_stac.rego": lax})
    assert_fails(FAIL_CLOSED, "the gate is not fail-closed: 2 malformed requests were allowed", "no input", env=env)


def test_a_contract_naming_another_input_than_the_bundle_reads_fails_the_gate(contracts_copy: Any) -> None:
    env = contracts_copy("policy", lambda c: c["item_gate"].update(input="kfm_elsewhere"))
    assert_fails(GATE, "single-item decision (deny) disagrees with its batch", "'kfm_elsewhere'", env=env)
