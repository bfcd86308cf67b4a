"""Proofs of the transport-security check: real services reached the way the rule forbids, and the check fails.

The check runs in its own pytest process against the local stack: over its plaintext endpoints in
staging, over its TLS endpoints with verification turned off, and over its TLS endpoints with a CA
the servers' certificates do not chain to.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import run_checks
from tests.plugins.tls import CHECK, TLS_SERVICES, var
from tests.proving import assert_failed

pytestmark = pytest.mark.devstack

STAGING = {"KFM_ENVIRONMENT": "staging"}
PLAINTEXT_SETTING = {"postgis": "KFM_POSTGIS__DSN", "graph": "KFM_GRAPH__URL", "search": "KFM_SEARCH__URL",
                     "cache": "KFM_CACHE__URL", "policy": "KFM_POLICY__URL", "llm": "KFM_LLM__URL"}


def _each(env: dict[str, str], services: tuple[str, ...] = TLS_SERVICES) -> dict[str, Any]:
    """The check of each service, in one pytest process."""
    results = run_checks(*(f"{CHECK}[{s}]" for s in services), env=env)
    return {s: results[f"{CHECK}[{s}]"] for s in services}


@pytest.mark.proves(CHECK)
def test_plaintext_in_staging_fails_for_every_service() -> None:
    """The stack's plaintext endpoints (sslmode=disable, bolt://, http://, redis://) with KFM_ENVIRONMENT=staging."""
    for service, result in _each(STAGING).items():
        assert_failed(f"{CHECK}[{service}]", result, f"{service} is reached over an insecure transport in staging",
                      "plaintext", PLAINTEXT_SETTING[service], f"KFM_{service.upper()}__ALLOW_INSECURE_TRANSPORT")


@pytest.mark.proves(CHECK)
def test_unverified_tls_in_production_fails(stack_tls: dict[str, str]) -> None:
    """The TLS endpoints, with the server's certificate left unchecked in each way the settings allow."""
    unverified = {
        **stack_tls, "KFM_ENVIRONMENT": "production",
        "KFM_POSTGIS__DSN": stack_tls["KFM_POSTGIS__DSN"] + "?sslmode=require",
        "KFM_SEARCH__VERIFY_CERTS": "false",
        "KFM_CACHE__URL": stack_tls["KFM_CACHE__URL"] + "?ssl_cert_reqs=none",
    }
    results = _each(unverified, ("postgis", "search", "cache"))
    assert_failed(f"{CHECK}[postgis]", results["postgis"], "TLS, server not verified: sslmode=require",
                  "KFM_POSTGIS__DSN")
    assert_failed(f"{CHECK}[search]", results["search"], "TLS, server not verified", "KFM_SEARCH__VERIFY_CERTS")
    assert_failed(f"{CHECK}[cache]", results["cache"], "TLS, server not verified (ssl_cert_reqs=none)",
                  "KFM_CACHE__URL")


@pytest.mark.proves(CHECK)
def test_a_certificate_that_does_not_verify_fails(stack_tls: dict[str, str], wrong_ca: Any) -> None:
    """Verified TLS is configured, but against a CA the servers' certificates do not chain to."""
    env = {**stack_tls, **STAGING, **{var(s, "ca_file"): str(wrong_ca.ca) for s in TLS_SERVICES}}
    for service, result in _each(env).items():
        assert_failed(f"{CHECK}[{service}]", result, f"{service} unreachable", "certificate verify failed",
                      unreachable=True)
