"""Transport security without a service: the TLS settings, how each connection is classed, the rule.

Certificates come from a CA made here with the stack's own tool (devstack.tls, the openssl CLI).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.tls import TlsFiles, issue, make_ca
from kfm_ops import transport
from kfm_ops.errors import ActionRefused, ExitCode, UsageError
from kfm_ops.settings import (
    CacheSettings,
    GraphSettings,
    LlmSettings,
    PolicySettings,
    PostgisSettings,
    SearchSettings,
    ServiceSettings,
    Settings,
    load_settings,
)
from maintenance.gates import services_of

KEY_CANARY = "key-path-canary-4b1d"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    ca = make_ca(tmp_path_factory.mktemp("pki"))
    issue(ca, "client", server=False)
    return ca


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No KFM_* from the shell: each test's settings are its own env file."""
    import os

    for key in [k for k in os.environ if k.startswith("KFM_")]:
        monkeypatch.delenv(key)
    env = tmp_path / "kfm.env"
    env.write_text("")
    yield env


def _load(env: Path, lines: dict[str, str]) -> Settings:
    env.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return load_settings(env)


def _refusal(env: Path, lines: dict[str, str]) -> str:
    with pytest.raises(UsageError) as caught:
        _load(env, lines)
    assert caught.value.exit_code == ExitCode.USAGE
    return str(caught.value)


# --------------------------------------------------------------------------- the settings
def test_tls_files_are_settings_of_every_service(clean_env: Path, pki: TlsFiles) -> None:
    settings = _load(clean_env, {
        "KFM_GRAPH__URL": "bolt+s://db:7687", "KFM_GRAPH__CA_FILE": str(pki.ca),
        "KFM_GRAPH__CLIENT_CERT": str(pki.client_cert), "KFM_GRAPH__CLIENT_KEY": str(pki.client_key),
        "KFM_POLICY__URL": "https://opa:8181",
    })
    assert settings.graph is not None and settings.graph.ca_file == pki.ca
    assert settings.graph.client_cert == pki.client_cert and settings.graph.client_key == pki.client_key
    assert settings.policy is not None and settings.policy.ca_file is None
    assert settings.graph.allow_insecure_transport is False


def test_an_empty_file_setting_is_an_error_not_unset(clean_env: Path) -> None:
    message = _refusal(clean_env, {"KFM_POLICY__URL": "https://opa:8181", "KFM_POLICY__CA_FILE": ""})
    assert "KFM_POLICY__CA_FILE: is empty" in message


def test_a_missing_ca_file_is_named(clean_env: Path) -> None:
    message = _refusal(clean_env, {"KFM_GRAPH__URL": "bolt+s://db:7687", "KFM_GRAPH__CA_FILE": "/nonexistent/ca.pem"})
    assert "KFM_GRAPH__CA_FILE" in message and "does not exist or is not readable" in message


def test_a_missing_client_key_is_named_and_its_path_never_echoed(clean_env: Path, pki: TlsFiles) -> None:
    message = _refusal(clean_env, {"KFM_CACHE__URL": "rediss://cache:6380/0",
                                   "KFM_CACHE__CLIENT_CERT": str(pki.client_cert),
                                   "KFM_CACHE__CLIENT_KEY": f"/nonexistent/{KEY_CANARY}.key"})
    assert "KFM_CACHE__CLIENT_KEY" in message
    assert KEY_CANARY not in message


def test_a_client_certificate_needs_its_key(clean_env: Path, pki: TlsFiles) -> None:
    message = _refusal(clean_env, {"KFM_LLM__URL": "https://llm:8443", "KFM_LLM__MODEL": "m",
                                   "KFM_LLM__CLIENT_CERT": str(pki.client_cert)})
    assert "KFM_LLM__CLIENT_CERT and KFM_LLM__CLIENT_KEY go together" in message


def test_a_file_that_is_no_certificate_is_named(clean_env: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    message = _refusal(clean_env, {"KFM_SEARCH__URL": "https://search:9200", "KFM_SEARCH__CA_FILE": str(garbage)})
    assert "KFM_SEARCH__CA_FILE does not hold a PEM CA certificate" in message


def test_a_key_of_another_certificate_is_named_never_echoed(clean_env: Path, pki: TlsFiles, tmp_path: Path) -> None:
    _crt, other_key = issue(pki, KEY_CANARY, server=False, out=tmp_path / "other")
    message = _refusal(clean_env, {"KFM_POLICY__URL": "https://opa:8181",
                                   "KFM_POLICY__CLIENT_CERT": str(pki.client_cert),
                                   "KFM_POLICY__CLIENT_KEY": str(other_key)})
    assert "KFM_POLICY__CLIENT_CERT and KFM_POLICY__CLIENT_KEY do not load" in message
    assert KEY_CANARY not in message


@pytest.mark.parametrize(("lines", "named"), [
    ({"KFM_GRAPH__URL": "bolt://db:7687"}, "KFM_GRAPH__URL is plaintext (bolt://"),
    ({"KFM_SEARCH__URL": "http://search:9200"}, "KFM_SEARCH__URL is plaintext (http://"),
    ({"KFM_CACHE__URL": "redis://cache:6379/0"}, "KFM_CACHE__URL is plaintext (redis://"),
    ({"KFM_POLICY__URL": "http://opa:8181"}, "KFM_POLICY__URL is plaintext (http://"),
    ({"KFM_LLM__URL": "http://llm:8011", "KFM_LLM__MODEL": "m"}, "KFM_LLM__URL is plaintext (http://"),
    ({"KFM_POSTGIS__DSN": "postgresql://u@db:5432/kfm?sslmode=prefer"}, "KFM_POSTGIS__DSN says sslmode=prefer"),
    ({"KFM_POSTGIS__DSN": "postgresql://u@db:5432/kfm", "KFM_POSTGIS__WRITE_DSN": "postgresql://o@db/kfm?sslmode=disable"},
     "KFM_POSTGIS__WRITE_DSN says sslmode=disable"),
    ({"KFM_POSTGIS__DSN": "postgresql://u@db:5432/kfm", "KFM_POSTGIS__REPLICA_DSN": "postgresql://u@r/kfm?sslmode=allow"},
     "KFM_POSTGIS__REPLICA_DSN says sslmode=allow"),
])
def test_tls_files_with_a_plaintext_transport_are_refused(clean_env: Path, pki: TlsFiles, lines: dict[str, str],
                                                          named: str) -> None:
    service = next(iter(lines)).split("__")[0]
    message = _refusal(clean_env, {**lines, f"{service}__CA_FILE": str(pki.ca)})
    assert named in message and "TLS settings need a TLS transport" in message


# --------------------------------------------------------------------------- how each connection is classed
SECURE, UNVERIFIED, PLAINTEXT = (True, True), (True, False), (False, False)
CASES: list[tuple[str, ServiceSettings, tuple[bool, bool], str]] = [
    ("postgis", PostgisSettings(dsn="postgresql://u@db/kfm?sslmode=verify-full"), SECURE, "KFM_POSTGIS__DSN"),
    ("postgis", PostgisSettings(dsn="postgresql://u@db/kfm?sslmode=verify-ca"), UNVERIFIED, "KFM_POSTGIS__DSN"),
    ("postgis", PostgisSettings(dsn="postgresql://u@db/kfm?sslmode=require"), UNVERIFIED, "KFM_POSTGIS__DSN"),
    ("postgis", PostgisSettings(dsn="postgresql://u@db/kfm?sslmode=prefer"), PLAINTEXT, "KFM_POSTGIS__DSN"),
    ("postgis", PostgisSettings(dsn="postgresql://u@db/kfm"), PLAINTEXT, "KFM_POSTGIS__DSN"),  # libpq's prefer
    ("postgis", PostgisSettings(dsn="postgresql://u@db/kfm?sslmode=disable"), PLAINTEXT, "KFM_POSTGIS__DSN"),
    ("graph", GraphSettings(url="bolt+s://db:7687"), SECURE, "KFM_GRAPH__URL"),
    ("graph", GraphSettings(url="neo4j+s://db:7687"), SECURE, "KFM_GRAPH__URL"),
    ("graph", GraphSettings(url="bolt://db:7687"), PLAINTEXT, "KFM_GRAPH__URL"),
    ("search", SearchSettings(url="https://s:9200"), SECURE, "KFM_SEARCH__URL"),
    ("search", SearchSettings(url="https://s:9200", verify_certs=False), UNVERIFIED, "KFM_SEARCH__VERIFY_CERTS"),
    ("search", SearchSettings(url="http://s:9200"), PLAINTEXT, "KFM_SEARCH__URL"),
    ("cache", CacheSettings(url="rediss://c:6380/0"), SECURE, "KFM_CACHE__URL"),
    ("cache", CacheSettings(url="rediss://c:6380/0?ssl_cert_reqs=none"), UNVERIFIED, "KFM_CACHE__URL"),
    ("cache", CacheSettings(url="rediss://c:6380/0?ssl_cert_reqs=optional"), UNVERIFIED, "KFM_CACHE__URL"),
    ("cache", CacheSettings(url="rediss://c:6380/0?ssl_check_hostname=false"), UNVERIFIED, "KFM_CACHE__URL"),
    ("cache", CacheSettings(url="redis://c:6379/0"), PLAINTEXT, "KFM_CACHE__URL"),
    ("policy", PolicySettings(url="https://opa:8181"), SECURE, "KFM_POLICY__URL"),
    ("policy", PolicySettings(url="http://opa:8181"), PLAINTEXT, "KFM_POLICY__URL"),
    ("llm", LlmSettings(url="https://llm:8443", model="m"), SECURE, "KFM_LLM__URL"),
    ("llm", LlmSettings(url="http://llm:8011", model="m"), PLAINTEXT, "KFM_LLM__URL"),
]


@pytest.mark.parametrize(("service", "section", "expected", "setting"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_transport_is_classed(service: str, section: ServiceSettings, expected: tuple[bool, bool],
                                   setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    found = transport.transports(service, section)
    assert len(found) == 1
    assert (found[0].encrypted, found[0].verified) == expected, found[0]
    assert found[0].setting == setting and found[0].service == service


def test_postgis_tls_files_mean_verify_full_unless_the_dsn_says(pki: TlsFiles,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    section = PostgisSettings(dsn="postgresql://u@db/kfm", write_dsn="postgresql://o@db/kfm?sslmode=verify-full",
                              ca_file=pki.ca)
    assert transport.postgis_sslmode(section, section.dsn) == "verify-full"
    assert [t.secure for t in transport.transports("postgis", section)] == [True, True]
    replica = section.model_copy(update={"replica_dsn": "postgresql://u@replica/kfm?sslmode=require"})
    assert [(t.secure, t.setting) for t in transport.transports("postgis", replica)][-1] == \
        (False, "KFM_POSTGIS__REPLICA_DSN")  # encrypted, not verified: the replica is held to the same rule
    assert transport.postgis_sslmode(PostgisSettings(dsn="postgresql://u@db/kfm"), "postgresql://u@db/kfm") == "prefer"
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    assert transport.postgis_sslmode(PostgisSettings(dsn="postgresql://u@db/kfm"), "postgresql://u@db/kfm") == \
        "verify-full"


def test_plaintext_http_with_a_token_says_so() -> None:
    found = transport.transports("llm", LlmSettings(url="http://llm:8011", model="m", api_key="k"))
    assert "credentials sent in the clear" in found[0].how


# --------------------------------------------------------------------------- the rule
def _settings(environment: str, **allow: bool) -> Settings:
    return Settings(environment=environment,  # type: ignore[arg-type]
                    graph=GraphSettings(url="bolt://db:7687", allow_insecure_transport=allow.get("graph", False)),
                    cache=CacheSettings(url="rediss://c:6380/0"),
                    search=SearchSettings(url="https://s:9200", verify_certs=False))


def test_dev_allows_everything() -> None:
    settings = _settings("dev")
    transport.require_secure(settings, ["graph", "search", "cache"])
    assert transport.refused(settings) == [] and transport.waived(settings) == []


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_staging_and_production_refuse_plaintext_and_unverified(environment: str) -> None:
    settings = _settings(environment)
    with pytest.raises(ActionRefused) as caught:
        transport.require_secure(settings, ["graph", "search", "cache"])
    refusal = caught.value
    assert refusal.exit_code == ExitCode.REFUSED
    assert f"insecure transport in {environment}" in refusal.message
    assert "graph: plaintext (bolt://) (KFM_GRAPH__URL)" in refusal.message
    assert "search: TLS, server not verified" in refusal.message and "KFM_SEARCH__VERIFY_CERTS" in refusal.message
    assert "cache" not in refusal.message  # verified TLS is fine
    assert "KFM_GRAPH__ALLOW_INSECURE_TRANSPORT=true" in refusal.hint
    transport.require_secure(settings, ["cache"])  # only the services asked about


def test_the_opt_out_allows_one_service_and_is_reported() -> None:
    settings = _settings("production", graph=True)
    with pytest.raises(ActionRefused) as caught:
        transport.require_secure(settings, ["graph", "search"])
    assert "KFM_SEARCH__VERIFY_CERTS" in caught.value.message and "KFM_GRAPH__URL" not in caught.value.message
    transport.require_secure(settings, ["graph"])
    waived = transport.waived(settings)
    assert [t.service for t in waived] == ["graph"]
    assert transport.waiver_line(waived[0]) == (
        "insecure transport allowed by KFM_GRAPH__ALLOW_INSECURE_TRANSPORT=true: graph: plaintext (bolt://) "
        "(KFM_GRAPH__URL)")


def test_an_action_is_held_to_the_services_it_connects_to() -> None:
    assert services_of(("canonical",)) == ["postgis"]
    assert services_of(("auth",)) == ["postgis"]
    assert services_of(("search", "graph", "search")) == ["postgis", "graph", "search"]


def test_the_client_context_verifies_and_presents_the_certificate(pki: TlsFiles) -> None:
    section = PolicySettings(url="https://opa:8181", ca_file=pki.ca, client_cert=pki.client_cert,
                             client_key=pki.client_key)
    context = transport.ssl_context(section)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "kfm devstack CA"),),)]
    assert transport.customised(section) and not transport.customised(PolicySettings(url="https://opa:8181"))


def test_a_server_that_declines_tls_is_a_tls_fault_by_its_type() -> None:
    from kfm_ops.faults import CERTIFICATE, TLS, fault_class
    from kfm_ops.stores.postgis import TlsNotOffered

    assert fault_class(TlsNotOffered("the server does not offer TLS")) == TLS
    wrapped = RuntimeError("driver wrapper")
    wrapped.__cause__ = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert fault_class(wrapped) == CERTIFICATE
