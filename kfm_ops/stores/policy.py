"""The OPA policy gate over its REST API (httpx). The store can evaluate policies, never change them."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from kfm_ops import transport
from kfm_ops.errors import ContractViolation
from kfm_ops.settings import PolicySettings
from kfm_ops.stores.base import Store


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
            raise ContractViolation(f"policy document data.{path} is undefined at {self.base_url}",
                                    hint="is the KFM policy bundle loaded? (kfm_ops/contracts/policy)")
        return body["result"]

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
