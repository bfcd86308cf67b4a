"""Transport security against the real TLS endpoints of the local stack.

Every service is reached over TLS, verified against the stack's CA with the harness's client
certificate; a CA the servers do not know fails the run (exit 4) naming the service and
"certificate verify failed"; TLS settings never fall back to plaintext; in staging a plaintext
transport is refused for an action (exit 3) before anything connects, unless the service's
opt-out says otherwise, which every run then logs and shows.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from devstack.config import load_config
from kfm_ops.checkrun import run_pytest
from kfm_ops.settings import PostgisSettings
from kfm_ops.stores.postgis import PostgisStore
from tests.helpers import ROOT, kfm_maint, run_checks
from tests.plugins.tls import CHECK, HEALTH, TLS_SERVICES, var

pytestmark = pytest.mark.devstack

STAGING = {"KFM_ENVIRONMENT": "staging"}


def _check_run(service: str, env: dict[str, str]) -> Any:
    """``kfm-maint check`` of one check that must reach ``service`` (short timeouts: a failure is quick)."""
    name = HEALTH[service].rsplit("::", 1)[1]
    timeouts = {var(service, "connect_timeout"): "3", var(service, "query_timeout"): "5"}
    return kfm_maint("check", "--", "-k", name, "-p", "no:cacheprovider", env={**env, **timeouts}, timeout=300)


def _named(proc: Any, *needles: str) -> None:
    out = proc.stdout + proc.stderr
    missing = [n for n in needles if n not in out]
    assert not missing, f"the output does not name {missing}:\n{out[-3000:]}"


# --------------------------------------------------------------------------- TLS, verified, both ways
def test_every_service_is_reached_over_verified_tls(stack_tls: dict[str, str]) -> None:
    """In staging, with the TLS settings: the transport check and a real check of each service pass."""
    wanted = [f"{CHECK}[{s}]" for s in TLS_SERVICES] + list(HEALTH.values())
    results = run_checks(*wanted, env={**stack_tls, **STAGING})
    assert {nodeid: r.outcome for nodeid, r in results.items()} == dict.fromkeys(wanted, "passed"), \
        {n: r.message for n, r in results.items() if r.outcome != "passed"}


def test_relative_tls_paths_mean_the_operators_directory(stack_tls: dict[str, str]) -> None:
    """kfm-maint runs the checks elsewhere (isolated): a relative CA or key path still means where it was started."""
    relative = {k: os.path.relpath(v, ROOT) for k, v in stack_tls.items() if k.startswith("KFM_POLICY__")
                and k.endswith(("__CA_FILE", "__CLIENT_CERT", "__CLIENT_KEY"))}
    assert len(relative) == 3 and not any(os.path.isabs(v) for v in relative.values())
    proc = kfm_maint("check", "--", "-k", "test_transport_is_encrypted_and_verified and policy", "-p",
                     "no:cacheprovider", env={**stack_tls, **STAGING, **relative})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    _named(proc, "1 passed")


def test_postgis_sees_the_client_certificate(stack_tls: dict[str, str]) -> None:
    """The server reports the session encrypted and names the harness's client certificate (pg_stat_ssl)."""
    section = PostgisSettings(dsn=stack_tls["KFM_POSTGIS__DSN"], password=stack_tls["KFM_POSTGIS__PASSWORD"],
                              ca_file=stack_tls["KFM_POSTGIS__CA_FILE"],
                              client_cert=stack_tls["KFM_POSTGIS__CLIENT_CERT"],
                              client_key=stack_tls["KFM_POSTGIS__CLIENT_KEY"])
    store = PostgisStore(section)
    try:
        assert store.sslmode == "verify-full"
        ssl, version, client = store.one("SELECT ssl, version, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        store.close()
    assert ssl is True and version in ("TLSv1.2", "TLSv1.3")
    assert client == "/CN=kfm-ops devstack client"


@pytest.mark.parametrize("service", TLS_SERVICES)
def test_a_wrong_ca_fails_the_run_naming_the_service(service: str, stack_tls: dict[str, str],
                                                     wrong_ca: Any) -> None:
    env = {**stack_tls, var(service, "ca_file"): str(wrong_ca.ca)}
    proc = _check_run(service, env)
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-2000:]
    _named(proc, f"{service} unreachable", "certificate verify failed")


@pytest.mark.parametrize("service", ["graph", "search", "cache", "policy", "llm"])
def test_the_tls_endpoints_require_a_client_certificate(service: str, stack_tls: dict[str, str]) -> None:
    """Without one the server ends the handshake: what the pass above proves is that ours is presented."""
    env = {k: v for k, v in stack_tls.items() if k not in (var(service, "client_cert"), var(service, "client_key"))}
    proc = _check_run(service, env)
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-2000:]
    _named(proc, f"{service} unreachable", "tls error")


def test_postgis_refuses_a_client_certificate_from_another_ca(stack_tls: dict[str, str], wrong_ca: Any) -> None:
    """PostgreSQL makes client certificates optional but verifies one that is presented."""
    env = {**stack_tls, "KFM_POSTGIS__CLIENT_CERT": str(wrong_ca.client_cert),
           "KFM_POSTGIS__CLIENT_KEY": str(wrong_ca.client_key)}
    proc = _check_run("postgis", env)
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-2000:]
    _named(proc, "postgis unreachable")


# --------------------------------------------------------------------------- no plaintext fallback
def _plaintext_only(service: str, cfg: dict[str, str], scratch_port: int) -> dict[str, str]:
    """TLS settings pointed at a port that speaks only plaintext."""
    at = "127.0.0.1:{}".format
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    return {
        "postgis": {"KFM_POSTGIS__DSN": f"postgresql://{user}@{at(scratch_port)}/postgres",
                    "KFM_POSTGIS__PASSWORD": ""},  # a PostgreSQL without ssl (the TLS files make it verify-full)
        "graph": {"KFM_GRAPH__URL": f"bolt+s://{at(cfg['DEVSTACK_OPA_PORT'])}"},  # a plaintext-only port
        "search": {"KFM_SEARCH__URL": f"https://{at(cfg['DEVSTACK_OPENSEARCH_PORT'])}"},
        "cache": {"KFM_CACHE__URL": f"rediss://{at(cfg['DEVSTACK_REDIS_PORT'])}/0"},
        "policy": {"KFM_POLICY__URL": f"https://{at(cfg['DEVSTACK_OPA_PORT'])}"},
        "llm": {"KFM_LLM__URL": f"https://{at(cfg['DEVSTACK_LLM_PORT'])}"},
    }[service]


@pytest.mark.parametrize("service", TLS_SERVICES)
def test_tls_settings_never_fall_back_to_plaintext(service: str, stack_tls: dict[str, str],
                                                   scratch_postgres: Any) -> None:
    port, _sql = scratch_postgres
    env = {**stack_tls, **_plaintext_only(service, load_config(), port)}
    proc = _check_run(service, env)
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-2000:]
    _named(proc, f"{service} unreachable")
    if service == "postgis":
        _named(proc, "tls error", "does not offer TLS, and sslmode=verify-full requires it")
    elif service != "cache":  # a plaintext Redis waits for the end of a "command" that never comes: a timeout
        _named(proc, "tls error")


# --------------------------------------------------------------------------- the rule in staging
def test_staging_refuses_a_plaintext_action_before_connecting() -> None:
    """Exit 3, naming the service and the setting; nothing listens on port 1, so a connection would be exit 4."""
    env = {**STAGING, "KFM_POSTGIS__DSN": "postgresql://kfm_reader@127.0.0.1:1/kfm?sslmode=disable",
           "KFM_POSTGIS__WRITE_DSN": "postgresql://kfm_owner@127.0.0.1:1/kfm?sslmode=disable"}
    proc = kfm_maint("migrate", "--dry-run", env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    _named(proc, "insecure transport in staging", "postgis: sslmode=disable: plaintext", "KFM_POSTGIS__WRITE_DSN",
           "KFM_POSTGIS__ALLOW_INSECURE_TRANSPORT=true")


def test_the_opt_out_lets_an_action_run_and_is_logged(scratch_postgres: Any) -> None:
    port, _sql = scratch_postgres
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    dsn = f"postgresql://{user}@127.0.0.1:{port}/postgres?sslmode=disable"
    env = {**STAGING, "KFM_POSTGIS__DSN": dsn, "KFM_POSTGIS__WRITE_DSN": dsn, "KFM_POSTGIS__PASSWORD": "",
           "KFM_POSTGIS__WRITE_PASSWORD": ""}
    plan = ("migrate", "--environment", "staging", "--dry-run")  # a fresh database: the run that would stamp it
    refused = kfm_maint(*plan, env=env)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    _named(refused, "insecure transport in staging")
    allowed = kfm_maint(*plan, "--json", env={**env, "KFM_POSTGIS__ALLOW_INSECURE_TRANSPORT": "true"})
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    warning = "insecure transport allowed by KFM_POSTGIS__ALLOW_INSECURE_TRANSPORT=true: postgis: sslmode=disable"
    assert f"kfm-maint: warning: {warning}" in allowed.stderr
    logged = [json.loads(line) for line in allowed.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "transport.insecure_allowed" and e["level"] == "warning" and e["service"] == "postgis"
               for e in logged), allowed.stderr
    document = json.loads(allowed.stdout)
    assert any(warning in w for w in document["warnings"])


def test_the_opt_out_passes_the_check_and_is_in_the_header() -> None:
    env = {**STAGING, "KFM_CACHE__ALLOW_INSECURE_TRANSPORT": "true"}
    run = run_pytest([f"{CHECK}[cache]", f"{CHECK}[graph]", "-p", "no:cacheprovider", "-o", "testpaths=opschecks"],
                     env=env, cwd=ROOT, timeout=300)
    assert run.report is not None, run.stdout + run.stderr
    outcomes = {t["nodeid"]: t["outcome"] for t in run.report["tests"]}
    assert outcomes == {f"{CHECK}[cache]": "passed", f"{CHECK}[graph]": "failed"}
    assert "WARNING insecure transport allowed by KFM_CACHE__ALLOW_INSECURE_TRANSPORT=true: cache: plaintext " \
           "(redis://)" in run.stdout
    assert run.report["kfm"]["insecure_transport_allowed"] == ["cache: plaintext (redis://) (KFM_CACHE__URL)"]
    assert '"event": "transport.insecure_allowed"' in run.stderr
