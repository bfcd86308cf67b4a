"""The local stack's TLS endpoints, for the transport-security tests and proofs.

``devstack/stack up`` serves TLS next to every plaintext endpoint, with a CA it generated
(``$DEVSTACK_HOME/tls/``); :func:`tls_env` is the harness's settings over them, as
``devstack/stack env --tls`` prints them. A test that needs a CA the servers do not know makes
one in its own tmp_path (:func:`wrong_ca`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.config import harness_env, load_config
from devstack.tls import TlsFiles, issue, make_ca

TLS_SERVICES = ("postgis", "graph", "search", "cache", "policy", "llm")
CHECK = "opschecks/health/test_transport.py::test_transport_is_encrypted_and_verified"
# one check per service that has to reach the server (through its TLS endpoint, in the TLS settings)
HEALTH = {
    "postgis": "opschecks/health/test_postgis.py::test_postgis_reachable",
    "graph": "opschecks/health/test_graph.py::test_graph_database_online",
    "search": "opschecks/health/test_search.py::test_search_cluster_health",
    "cache": "opschecks/health/test_cache.py::test_cache_ping",
    "policy": "opschecks/health/test_policy.py::test_policy_bundle_loaded",
    "llm": "opschecks/health/test_llm.py::test_llm_model_listed",
}


def var(service: str, name: str) -> str:
    return f"KFM_{service.upper()}__{name.upper()}"


@pytest.fixture(scope="session")
def stack_tls() -> dict[str, str]:
    """The local stack's settings over TLS (``devstack/stack env --tls``); its CA files must exist."""
    env = harness_env(load_config(), tls=True)
    missing = [p for p in (env["KFM_POSTGIS__CA_FILE"], env["KFM_POSTGIS__CLIENT_KEY"]) if not Path(p).is_file()]
    assert not missing, f"the stack's TLS files are missing ({missing}): run devstack/stack up"
    return env


@pytest.fixture
def wrong_ca(tmp_path: Path) -> TlsFiles:
    """A CA of this test's own, unknown to every server, with a client certificate it signed."""
    ca = make_ca(tmp_path / "wrong-ca", "kfm-proof wrong CA")
    issue(ca, "client", server=False, cn="kfm-proof foreign client")
    return ca
