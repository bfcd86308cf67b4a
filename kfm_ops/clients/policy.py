"""The OPA policy gate over its REST API (httpx)."""

from __future__ import annotations

from typing import Any

import httpx

from kfm_ops.errors import ContractViolation
from kfm_ops.settings import PolicySettings


class PolicyClient:
    """Evaluates KFM policy documents; has no way to change policies."""

    def __init__(self, section: PolicySettings) -> None:
        headers = {"Authorization": f"Bearer {section.token.get_secret_value()}"} if section.token else {}
        self.base_url = section.url
        self.http = httpx.Client(
            base_url=section.url,
            headers=headers,
            timeout=httpx.Timeout(section.query_timeout, connect=section.connect_timeout),
        )

    def health(self, *, bundles: bool = False) -> httpx.Response:
        return self.http.get("/health", params={"bundles": "true"} if bundles else None)

    def data(self, path: str, input: Any = None) -> Any:  # noqa: A002 — OPA's own word
        """Evaluate ``data.<path>`` (dots or slashes) with ``input``; undefined → ContractViolation."""
        url = "/v1/data/" + path.replace(".", "/")
        response = self.http.post(url, json={"input": input}) if input is not None else self.http.get(url)
        response.raise_for_status()
        body = response.json()
        if "result" not in body:
            raise ContractViolation(f"policy document data.{path} is undefined at {self.base_url}",
                                    hint="is the KFM policy bundle loaded? (kfm_ops/contracts/policy)")
        return body["result"]

    def close(self) -> None:
        self.http.close()


def open(section: PolicySettings, *, write: bool) -> PolicyClient:  # noqa: A001 — policies are never written
    return PolicyClient(section)


def ping(client: PolicyClient) -> None:
    client.health().raise_for_status()


def version(client: PolicyClient) -> str:
    response = client.http.post("/v1/query", json={"query": "v := opa.runtime().version"})
    response.raise_for_status()
    result = response.json().get("result") or [{}]
    return f"OPA {result[0].get('v', 'unknown')}"


def close(client: PolicyClient) -> None:
    client.close()
