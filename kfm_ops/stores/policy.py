"""The OPA policy gate over its REST API (httpx). The store can evaluate policies, never change them.

Where the decisions live and how they read comes from the policy contract (``policy.json``,
docs/contracts.md): bundles differ — ``data.kfm.stac.decision`` with ``{"item": …}`` and an
``allow``/``deny`` object, or a Rego v0 package with a ``deny`` set and an ``allow`` rule over
the bare item — and the checks work with either by configuration only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from kfm_ops import transport
from kfm_ops.errors import ContractViolation
from kfm_ops.settings import PolicySettings
from kfm_ops.stores.base import Store


@dataclass(frozen=True)
class Decision:
    """One item's verdict: allowed only when the policy says ``allow`` is exactly true."""

    allow: bool
    deny: tuple[str, ...] = ()

    @classmethod
    def read(cls, result: Any, allow_key: str, deny_key: str) -> Decision:
        """A decision document as the contract says to read it; anything else (a bare value, a missing or non-true
        ``allow`` — an undefined v0 rule) is a denial."""
        if not isinstance(result, dict):
            return cls(False, (f"the decision is {type(result).__name__}, not an object",))
        deny = result.get(deny_key) or []
        reasons = tuple(str(r) for r in (deny if isinstance(deny, list | tuple) else [deny]))
        return cls(result.get(allow_key) is True, reasons)


@dataclass(frozen=True)
class ItemGate:
    """The publication gate of the policy contract: where it is, what input it takes, how it answers."""

    decision: str
    input_key: str | None  # None: the bare item is the input
    allow_key: str
    deny_key: str
    batch: str | None = None  # a document deciding many items at once, keyed by item id
    batch_input_key: str = "items"

    @classmethod
    def of(cls, contract: dict[str, Any]) -> ItemGate:
        gate = contract["item_gate"]
        batch = gate.get("batch") or {}
        return cls(gate["decision"], gate.get("input"), gate["allow"], gate["deny"], batch.get("document"),
                   batch.get("input", "items"))

    @property
    def document(self) -> str:
        """The document the checks ask, as Rego names it (``data.kfm.stac.batch``)."""
        return "data." + (self.batch or self.decision).replace("/", ".")

    def wrap(self, item: Any) -> Any:
        return {self.input_key: item} if self.input_key else item


class PolicyStore(Store[PolicySettings]):
    """Evaluates KFM policy documents over OPA's data API."""

    service: ClassVar[str] = "policy"
    label: ClassVar[str] = "opa"

    def __init__(self, section: PolicySettings, *, write: bool = False) -> None:  # policies are never written
        super().__init__(section, write=False)
        headers = {"Authorization": f"Bearer {section.token.get_secret_value()}"} if section.token else {}
        self.base_url = section.url
        self.http = httpx.Client(base_url=section.url, headers=headers,
                                 timeout=httpx.Timeout(section.query_timeout, connect=section.connect_timeout),
                                 verify=transport.ssl_context(section) if transport.customised(section) else True)

    def health(self, *, bundles: bool = False) -> int:
        """The status of ``GET /health`` (``?bundles=true``: 200 only once every bundle is activated)."""
        with self.errors():
            return self.http.get("/health", params={"bundles": "true"} if bundles else None).status_code

    def data(self, path: str, input: Any = None) -> Any:  # noqa: A002 — OPA's own word
        """Evaluate ``data.<path>`` (dots or slashes) with ``input``; undefined → ContractViolation."""
        url = "/v1/data/" + path.replace(".", "/")
        with self.errors():
            response = self.http.post(url, json={"input": input}) if input is not None else self.http.get(url)
            response.raise_for_status()
            body = response.json()
        if "result" not in body:
            raise ContractViolation(f"policy document data.{path.replace('/', '.')} is undefined at {self.base_url}",
                                    hint="is the KFM policy bundle loaded? (kfm_ops/contracts/policy)")
        return body["result"]

    def decide(self, gate: ItemGate, item: Any) -> Decision:
        """The gate's decision on one item (or on a malformed input: it must deny)."""
        return Decision.read(self.data(gate.decision, gate.wrap(item)), gate.allow_key, gate.deny_key)

    def decide_all(self, gate: ItemGate, items: Sequence[tuple[str, Any]]) -> dict[str, Decision]:
        """Decisions on ``(id, item)`` pairs: one batch request when the gate has one, else one per item."""
        if gate.batch is None:
            return {item_id: self.decide(gate, item) for item_id, item in items}
        result = self.data(gate.batch, {gate.batch_input_key: [item for _id, item in items]})
        missing = {"allow": False, "deny": ["no decision returned"]}
        return {item_id: Decision.read(result.get(item_id, missing) if isinstance(result, dict) else missing,
                                       gate.allow_key, gate.deny_key) for item_id, _item in items}

    def ping(self) -> None:
        with self.errors():
            self.http.get("/health").raise_for_status()

    def version(self) -> str:
        with self.errors():
            response = self.http.post("/v1/query", json={"query": "v := opa.runtime().version"})
            response.raise_for_status()
        result = response.json().get("result") or [{}]
        return f"OPA {result[0].get('v', 'unknown')}"

    def close(self) -> None:
        self.http.close()
