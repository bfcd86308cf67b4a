"""devstack's TLS: the CA and certificates it makes, and the TLS endpoints of the running stack."""

from __future__ import annotations

import os
import shlex
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from devstack.config import Stack, harness_env
from devstack.net import http
from devstack.services.redis import resp_command
from devstack.tls import CLIENT_CN, TlsFiles, client_context, ensure_certs, handshake, make_ca, tls_dir
from tests.devstack.conftest import base_env, run_stack

PSQL = "/usr/lib/postgresql/15/bin/psql"


def _text(cert: Path) -> str:
    return subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(cert)], capture_output=True, text=True,
                          check=True).stdout


def test_certificates_are_made_once_private_and_renewed_from_a_new_ca(tmp_path: Path) -> None:
    st = Stack({"DEVSTACK_HOME": str(tmp_path / "home")})
    files = ensure_certs(st)
    assert files.dir == tls_dir(st) and stat.S_IMODE(files.dir.stat().st_mode) == 0o700
    made = {p.name: p.read_bytes() for p in files.dir.iterdir()}
    assert set(made) == {"ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key"}
    assert all(stat.S_IMODE((files.dir / name).stat().st_mode) == 0o600 for name in made)

    server = _text(files.server_cert)
    assert "IP Address:127.0.0.1, DNS:localhost" in server and "TLS Web Server Authentication" in server
    client = _text(files.client_cert)
    assert f"CN = {CLIENT_CN}" in client and "TLS Web Client Authentication" in client
    for cert in (files.server_cert, files.client_cert):
        subprocess.run(["openssl", "verify", "-CAfile", str(files.ca), str(cert)], check=True, capture_output=True)

    assert {p.name: p.read_bytes() for p in ensure_certs(st).dir.iterdir()} == made  # made once
    files.ca_key.unlink()  # a CA without its key: a new CA, and the certificates it signs
    again = ensure_certs(st)
    assert again.ca.read_bytes() != made["ca.crt"] and again.server_cert.read_bytes() != made["server.crt"]
    subprocess.run(["openssl", "verify", "-CAfile", str(again.ca), str(again.client_cert)], check=True,
                   capture_output=True)


def test_env_tls_prints_the_tls_settings(cfg: dict[str, str]) -> None:
    res = run_stack("env", "--tls", env={k: v for k, v in base_env().items() if not k.startswith("KFM_")})
    assert res.returncode == 0, res.stderr
    exported = dict(line[len("export "):].split("=", 1) for line in res.stdout.splitlines())
    exported = {k: shlex.split(v)[0] for k, v in exported.items()}
    at = "127.0.0.1:{}".format
    assert exported["KFM_GRAPH__URL"] == f"bolt+s://{at(cfg['DEVSTACK_NEO4J_BOLT_PORT'])}"
    assert exported["KFM_SEARCH__URL"] == f"https://{at(cfg['DEVSTACK_OPENSEARCH_TLS_PORT'])}"
    assert exported["KFM_CACHE__URL"] == f"rediss://{at(cfg['DEVSTACK_REDIS_TLS_PORT'])}/0"
    assert exported["KFM_POLICY__URL"] == f"https://{at(cfg['DEVSTACK_OPA_TLS_PORT'])}"
    assert exported["KFM_LLM__URL"] == f"https://{at(cfg['DEVSTACK_LLM_TLS_PORT'])}"
    assert "sslmode" not in exported["KFM_POSTGIS__DSN"]  # the CA file makes it verify-full
    ca = str(tls_dir(Stack(cfg)) / "ca.crt")
    for service in ("POSTGIS", "GRAPH", "SEARCH", "CACHE", "POLICY", "LLM"):
        assert exported[f"KFM_{service}__CA_FILE"] == ca
        assert exported[f"KFM_{service}__CLIENT_KEY"].endswith("/client.key")
    assert set(harness_env(cfg)) < set(harness_env(cfg, tls=True))
    assert harness_env(cfg)["KFM_POSTGIS__DSN"].endswith("?sslmode=disable")  # plaintext says so


@pytest.mark.devstack
def test_every_tls_endpoint_verifies_and_requires_the_stacks_certificates(running_stack: dict[str, dict],
                                                                          cfg: dict[str, str], tmp_path: Path) -> None:
    files = TlsFiles(tls_dir(Stack(cfg)))
    port = {k: int(v) for k, v in cfg.items() if k.endswith("_PORT")}
    password = cfg["DEVSTACK_REDIS_PASSWORD"]
    with handshake(port["DEVSTACK_REDIS_TLS_PORT"], files) as tls:
        assert resp_command(tls, "AUTH", password) == "OK" and resp_command(tls, "PING") == "PONG"
    context = client_context(files)
    for key, path in (("DEVSTACK_OPA_TLS_PORT", "/health"), ("DEVSTACK_OPENSEARCH_TLS_PORT", "/_cluster/health")):
        assert http(f"https://127.0.0.1:{port[key]}{path}", context=context)[0] == 200, key
    with handshake(port["DEVSTACK_NEO4J_BOLT_PORT"], files) as bolt:
        bolt.sendall(bytes.fromhex("6060B017" "00040405" "00000404" "00000000" "00000000"))
        assert bolt.recv(4) not in (b"", b"\0\0\0\0")
    psql = subprocess.run([PSQL, "-X", "-At", "-h", "127.0.0.1", "-p", str(port["DEVSTACK_POSTGIS_PORT"]), "-U",
                           cfg["DEVSTACK_PG_OWNER"], "-d", cfg["DEVSTACK_PG_DATABASE"], "-c",
                           "select ssl, client_dn from pg_stat_ssl where pid = pg_backend_pid()"],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], "PGPASSWORD": cfg["DEVSTACK_PG_OWNER_PASSWORD"],
                               "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(files.ca),
                               "PGSSLCERT": str(files.client_cert), "PGSSLKEY": str(files.client_key)})
    assert psql.stdout.strip() == f"t|/CN={CLIENT_CN}", psql.stderr

    other = make_ca(tmp_path / "other")  # a client that trusts another CA rejects every server certificate
    strange = ssl.create_default_context(cafile=str(other.ca))
    anonymous = ssl.create_default_context(cafile=str(files.ca))  # trusts the CA, presents no certificate
    for key in ("DEVSTACK_REDIS_TLS_PORT", "DEVSTACK_OPA_TLS_PORT", "DEVSTACK_OPENSEARCH_TLS_PORT",
                "DEVSTACK_LLM_TLS_PORT", "DEVSTACK_NEO4J_BOLT_PORT"):
        with socket.create_connection(("127.0.0.1", port[key]), timeout=5) as raw, \
                pytest.raises(ssl.SSLCertVerificationError):
            strange.wrap_socket(raw, server_hostname="127.0.0.1")
        with socket.create_connection(("127.0.0.1", port[key]), timeout=5) as raw, pytest.raises(OSError):
            tls = anonymous.wrap_socket(raw, server_hostname="127.0.0.1")  # TLS 1.3: refused at the first read
            tls.sendall(b"PING\r\n")
            if not tls.recv(64):
                raise ConnectionResetError(f"{key}: closed without a client certificate")
