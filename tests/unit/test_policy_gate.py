"""How the checks read a policy gate's answer, from the policy contract (policy.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kfm_ops import contracts
from kfm_ops.errors import UsageError
from kfm_ops.stores.policy import Decision, ItemGate

V0 = Path(__file__).resolve().parents[2] / "docs" / "examples" / "policy-v0" / "policy.json"


@pytest.mark.parametrize(("result", "allow", "deny"), [
    ({"allow": True, "deny": []}, True, ()),
    ({"allow": False, "deny": ["missing id"]}, False, ("missing id",)),
    ({"deny": []}, False, ()),  # a v0 `allow` rule left undefined
    ({"allow": "yes"}, False, ()),  # only exactly true allows
    ({"allow": True, "deny": "one reason"}, True, ("one reason",)),
    ("allowed", False, ("the decision is str, not an object",)),
    (None, False, ("the decision is NoneType, not an object",)),
])
def test_a_decision_allows_only_on_exactly_true(result: Any, allow: bool, deny: tuple[str, ...]) -> None:
    assert Decision.read(result, "allow", "deny") == Decision(allow, deny)


def test_the_builtin_gate_wraps_the_item_and_decides_in_batches() -> None:
    gate = ItemGate.of(contracts.load("policy"))
    assert gate.wrap({"id": "x"}) == {"item": {"id": "x"}}
    assert (gate.batch, gate.batch_input_key, gate.document) == ("kfm/stac/batch", "items", "data.kfm.stac.batch")


def test_the_v0_example_takes_the_bare_item_one_at_a_time() -> None:
    gate = ItemGate.of(json.loads(V0.read_text()))
    assert gate.wrap({"id": "x"}) == {"id": "x"} and gate.batch is None
    assert gate.document == "data.kfm.catalog.stac"


def test_a_policy_contract_with_a_bad_path_is_a_usage_error(tmp_path: Path) -> None:
    folder = tmp_path / "contracts"
    folder.mkdir()
    contract = contracts.load("policy")
    (folder / "policy.json").write_text(json.dumps({**contract, "item_gate": {**contract["item_gate"],
                                                                            "decision": "kfm/../secrets"}}))
    with pytest.raises(UsageError, match=r"item_gate\.decision is 'kfm/\.\./secrets'"):
        contracts.load("policy", folder)
