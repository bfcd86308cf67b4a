"""devstack/stack against the real processes: status, idempotency, failure messages, and each service."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest

from devstack.commands import env_exports
from devstack.config import Stack, harness_env
from devstack.errors import ProbeError
from devstack.services import all_classes
from devstack.services.neo4j import Neo4j
from devstack.services.redis import resp_command
from tests.devstack.conftest import SERVICES, free_port, pid_alive, run_stack

pytestmark = pytest.mark.devstack

PSQL = "/usr/lib/postgresql/15/bin/psql"

EXPECTED_VERSION = {
    "postgis": r"^PostgreSQL 15\.\d+ / PostGIS 3\.",
    "opensearch": r"^2\.19\.1 \((green|yellow)\)$",
    "neo4j": r"^5\.26\.12 community$",
    "redis": r"^7\.",
    "opa": r"^1\.4\.2$",
    "llm": r"^llama-cpp-python 0\.3\.16 \(",
    "toxiproxy": r"^2\.12\.0$",
    "prometheus": r"^2\.42\.",
    "pushgateway": r"^1\.5\.",
    "stunnel": r"^5\.\d+$",
}


def pidfiles(state: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted((state / "run").glob("*.pid"))}


def http_json(url: str, *, method: str = "GET", body: object = None, headers: dict[str, str] | None = None,
              timeout: float = 30) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"raw": raw.decode(errors="replace")}


# --------------------------------------------------------------------------- the command itself
def test_status_reports_every_service_up_with_versions(running_stack: dict[str, dict]) -> None:
    res = run_stack("status")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == SERVICES
    for ln in lines:
        assert " up " in ln, ln
    js = run_stack("status", "--json")
    assert js.returncode == 0
    rows = {r["name"]: r for r in json.loads(js.stdout)}
    assert list(rows) == SERVICES
    for name, row in rows.items():
        assert row["up"] is True, row
        assert re.search(EXPECTED_VERSION[name], row["version"]), (name, row["version"])
        assert row["pids"], name


def test_up_when_up_is_a_noop(running_stack: dict[str, dict], cfg: dict[str, str]) -> None:
    state = Stack(cfg).state
    before = pidfiles(state)
    assert set(before) == set(SERVICES)
    res = run_stack("up")
    assert res.returncode == 0, res.stdout + res.stderr
    for name in SERVICES:
        assert re.search(rf"^{name}\s+already up", res.stdout, re.M), res.stdout
    assert "starting" not in res.stdout
    assert pidfiles(state) == before


def test_port_taken_by_a_foreign_process_fails_clearly(scratch_stack: dict[str, str]) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env = dict(scratch_stack, DEVSTACK_REDIS_PORT=str(port))
        res = run_stack("up", "redis", env=env, timeout=300)
    log = Path(env["DEVSTACK_HOME"]) / "logs" / "redis.log"
    assert res.returncode != 0
    msg = res.stderr.strip()
    assert "\n\n" not in msg and msg.count("\n") == 0, f"not one paragraph: {msg!r}"
    assert "redis" in msg and f"127.0.0.1:{port}" in msg and "DEVSTACK_REDIS_PORT" in msg
    assert "not part of this devstack" in msg
    assert str(log) in msg and log.is_file()
    assert not list((Path(env["DEVSTACK_HOME"]) / "run").glob("*.pid")), "nothing may have been started"


def test_service_that_fails_to_start_names_itself_and_its_log(scratch_stack: dict[str, str], tmp_path: Path) -> None:
    bundle = tmp_path / "broken-bundle"
    bundle.mkdir()
    (bundle / "broken.rego").write_text("package kfm.broken\nthis is not rego\n")
    env = dict(scratch_stack, DEVSTACK_OPA_BUNDLE=str(bundle))
    res = run_stack("up", "opa", env=env, timeout=600)
    log = Path(env["DEVSTACK_HOME"]) / "logs" / "opa.log"
    assert res.returncode != 0
    msg = res.stderr.strip()
    assert msg.count("\n") == 0, f"not one paragraph: {msg!r}"
    assert msg.startswith("devstack: opa failed to start") and "exited with status" in msg
    assert "rego_parse_error" in msg
    assert str(log) in msg and log.is_file()
    st = run_stack("status", "--json", env=env)
    row = next(r for r in json.loads(st.stdout) if r["name"] == "opa")
    assert row["up"] is False and row["pids"] == []


def test_down_leaves_no_process_and_is_idempotent(scratch_stack: dict[str, str]) -> None:
    env = scratch_stack
    state = Path(env["DEVSTACK_HOME"])
    up = run_stack("up", "redis", "toxiproxy", env=env, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    pids = [int(p.split()[0]) for p in pidfiles(state).values()]
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    down = run_stack("down", env=env)
    assert down.returncode == 0, down.stderr
    assert re.search(r"^redis\s+stopped", down.stdout, re.M) and re.search(r"^toxiproxy\s+stopped", down.stdout, re.M)
    assert not any(pid_alive(p) for p in pids)
    assert not pidfiles(state)
    again = run_stack("down", env=env)
    # down stops every service it knows, the optional ones (a second search node, the standby) included
    assert again.returncode == 0 and again.stdout.count("already down") == len(all_classes())


def test_status_is_nonzero_when_a_service_is_stopped(running_stack: dict[str, dict]) -> None:
    try:
        down = run_stack("down", "redis")
        assert down.returncode == 0, down.stderr
        res = run_stack("status")
        assert res.returncode == 1
        lines = {ln.split()[0]: ln for ln in res.stdout.splitlines()}
        assert " down " in lines["redis"] and "not running" in lines["redis"]
        assert all(" up " in ln for name, ln in lines.items() if name != "redis")
        rows = {r["name"]: r for r in json.loads(run_stack("status", "--json").stdout)}
        assert rows["redis"]["up"] is False
    finally:
        up = run_stack("up", "redis")
    assert up.returncode == 0, up.stdout + up.stderr
    assert run_stack("status").returncode == 0


def _exports(stdout: str) -> dict[str, str]:
    exported = {}
    for line in stdout.splitlines():
        assert line.startswith("export KFM_"), line
        key, _, value = line[len("export "):].partition("=")
        exported[key] = shlex.split(value)[0] if value else ""
    return exported


def test_env_prints_the_harness_settings(cfg: dict[str, str]) -> None:
    res = run_stack("env")
    assert res.returncode == 0
    exported = _exports(res.stdout)
    assert exported["KFM_SEARCH__URL"] == f"http://127.0.0.1:{cfg['DEVSTACK_OPENSEARCH_PORT']}"
    assert exported["KFM_CACHE__PASSWORD"] == cfg["DEVSTACK_REDIS_READER_PASSWORD"]
    assert exported == env_exports(cfg)
    assert set(harness_env(cfg)) <= set(exported)
    assert {k for k in exported if k not in harness_env(cfg)} == {k for k in cfg if k.startswith("KFM_")}


def test_env_follows_the_stack_settings_and_explicit_overrides() -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DEVSTACK_", "KFM_"))},
           "DEVSTACK_REDIS_PORT": "16379", "DEVSTACK_PG_READER_PASSWORD": "another reader pw",
           "KFM_POLICY__URL": "http://127.0.0.1:9999"}
    res = run_stack("env", env=env)
    assert res.returncode == 0, res.stderr
    exported = _exports(res.stdout)
    assert exported["KFM_CACHE__URL"] == "redis://127.0.0.1:16379/0"
    assert exported["KFM_POSTGIS__PASSWORD"] == "another reader pw"
    assert exported["KFM_POLICY__URL"] == "http://127.0.0.1:9999"  # a KFM_* set explicitly wins


def test_every_service_listens_on_loopback_only(running_stack: dict[str, dict]) -> None:
    ports = {p for row in running_stack.values() for p in row["ports"].values()}
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    seen: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            addr, hexport = parts[1].rsplit(":", 1)
            if parts[3] == "0A" and int(hexport, 16) in ports:
                seen.setdefault(int(hexport, 16), set()).add(addr)
    assert set(seen) == ports
    for port, addrs in seen.items():
        assert addrs <= loopback, f"port {port} listens on {addrs}"


# --------------------------------------------------------------------------- each service, for real
def _psql(cfg: dict[str, str], user: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PSQL, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", cfg["DEVSTACK_POSTGIS_PORT"],
         "-U", user, "-d", cfg["DEVSTACK_PG_DATABASE"], "-c", sql],
        capture_output=True, text=True, timeout=30,
        env={"PATH": os.environ["PATH"], "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})


def test_postgis_roles(running_stack: dict[str, dict], cfg: dict[str, str]) -> None:
    owner, owner_pw = cfg["DEVSTACK_PG_OWNER"], cfg["DEVSTACK_PG_OWNER_PASSWORD"]
    reader, reader_pw = cfg["DEVSTACK_PG_READER"], cfg["DEVSTACK_PG_READER_PASSWORD"]
    table = f"kfm_ops.devstack_probe_{os.getpid()}"
    made = _psql(cfg, owner, owner_pw, f"create table {table} (id int primary key, g geometry(Point, 4326)); "
                                       f"insert into {table} values (1, ST_SetSRID(ST_MakePoint(-97.5, 38.5), 4326))")
    assert made.returncode == 0, made.stderr
    try:
        read = _psql(cfg, reader, reader_pw, f"select id, ST_AsText(g) from {table}")
        assert read.returncode == 0, read.stderr
        assert read.stdout.strip() == "1|POINT(-97.5 38.5)"  # default privileges reach new tables
        ro = _psql(cfg, reader, reader_pw, "show default_transaction_read_only")
        assert ro.stdout.strip() == "on"
        write = _psql(cfg, reader, reader_pw, f"insert into {table} values (2, null)")
        assert write.returncode != 0 and "read-only" in write.stderr
        schemas = _psql(cfg, owner, owner_pw, "select string_agg(nspname, ',' order by nspname) from pg_namespace "
                                              f"where nspname like 'kfm%' and nspowner = '{owner}'::regrole")
        assert schemas.stdout.strip() == "kfm,kfm_auth,kfm_cache,kfm_ops"
        hashes = _psql(cfg, reader, reader_pw, "select count(*) from kfm_auth.operators")
        assert hashes.returncode != 0 and "permission denied" in hashes.stderr  # the owner's only
        grants = _psql(cfg, reader, reader_pw, "select pg_has_role('pg_read_all_stats', 'USAGE'), "
                                               "pg_has_role('pg_monitor', 'MEMBER')")
        assert grants.stdout.strip() == "t|f"
        # the change slots' needs: logical WAL, and REPLICATION for the actions' role only
        level = _psql(cfg, reader, reader_pw, "select current_setting('wal_level'), "
                      f"(select rolreplication from pg_roles where rolname = '{owner}'), "
                      f"(select rolreplication from pg_roles where rolname = '{reader}')")
        assert level.stdout.strip() == "logical|t|f", level.stdout
    finally:
        _psql(cfg, owner, owner_pw, f"drop table if exists {table}")
    su = _psql(cfg, "postgres", owner_pw, "select 1")
    assert su.returncode != 0, "the superuser must not be reachable over TCP"
    bad = _psql(cfg, reader, "wrong-password", "select 1")
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr


def test_redis_reader_acl(running_stack: dict[str, dict], cfg: dict[str, str]) -> None:
    port = int(cfg["DEVSTACK_REDIS_PORT"])
    key = f"devstack:probe:{os.getpid()}"
    cmd = resp_command
    with socket.create_connection(("127.0.0.1", port), timeout=5) as w:
        assert cmd(w, "AUTH", cfg["DEVSTACK_REDIS_PASSWORD"]) == "OK"
        assert cmd(w, "SET", key, "v", "EX", "60") == "OK"
        assert cmd(w, "CONFIG", "GET", "maxmemory-policy") == ["maxmemory-policy", "volatile-lru"]
        assert cmd(w, "CONFIG", "GET", "maxmemory") == ["maxmemory", str(256 * 1024 * 1024)]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as r:
                assert cmd(r, "AUTH", cfg["DEVSTACK_REDIS_READER"], cfg["DEVSTACK_REDIS_READER_PASSWORD"]) == "OK"
                assert cmd(r, "PING") == "PONG"
                assert cmd(r, "GET", key) == "v"
                assert 0 < cmd(r, "TTL", key) <= 60
                cursor, found = "0", []
                for _ in range(1000):
                    cursor, batch = cmd(r, "SCAN", cursor, "MATCH", key, "COUNT", "1000")
                    found += batch
                    if cursor == "0":
                        break
                assert key in found
                assert "redis_version:7." in cmd(r, "INFO", "server")
                assert cmd(r, "MEMORY", "USAGE", key) > 0
                for forbidden in (("SET", key, "x"), ("DEL", key), ("FLUSHALL",), ("CONFIG", "GET", "maxmemory")):
                    with pytest.raises(ProbeError, match="NOPERM"):
                        cmd(r, *forbidden)
        finally:
            cmd(w, "DEL", key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as anon, \
            pytest.raises(ProbeError, match="NOAUTH"):
        cmd(anon, "GET", key)


def test_opensearch_geo_shape(running_stack: dict[str, dict], cfg: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{cfg['DEVSTACK_OPENSEARCH_PORT']}"
    index = f"devstack-geo-{os.getpid()}"
    code, body = http_json(f"{base}/{index}", method="PUT", body={
        "settings": {"number_of_replicas": 0},
        "mappings": {"properties": {"area": {"type": "geo_shape"}, "at": {"type": "geo_point"}}}})
    assert code == 200, body
    try:
        code, body = http_json(f"{base}/{index}/_doc/1?refresh=true", method="PUT", body={
            "area": {"type": "polygon", "coordinates": [[[-98, 38], [-97, 38], [-97, 39], [-98, 39], [-98, 38]]]},
            "at": {"lat": 38.5, "lon": -97.5}})
        assert code in (200, 201), body
        code, body = http_json(f"{base}/{index}/_search", method="POST", body={"query": {"geo_shape": {"area": {
            "shape": {"type": "point", "coordinates": [-97.5, 38.5]}, "relation": "intersects"}}}})
        assert code == 200 and body["hits"]["total"]["value"] == 1, body
        code, health = http_json(f"{base}/_cluster/health/{index}?wait_for_status=green&timeout=10s")
        assert health["status"] == "green"
    finally:
        http_json(f"{base}/{index}", method="DELETE")


def test_neo4j_auth_and_cypher(running_stack: dict[str, dict], cfg: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{cfg['DEVSTACK_NEO4J_HTTP_PORT']}/db/neo4j/tx/commit"
    stmt = {"statements": [{"statement": "RETURN 1 AS one"}]}

    def auth(pw: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"neo4j:{pw}".encode()).decode()}

    code, body = http_json(url, method="POST", body=stmt, headers=auth(cfg["DEVSTACK_NEO4J_PASSWORD"]))
    assert code == 200 and body["results"][0]["data"][0]["row"] == [1], body
    code, _ = http_json(url, method="POST", body=stmt, headers=auth("neo4j"))
    assert code == 401
    neo = Neo4j(Stack(cfg))
    neo._bolt_handshake(int(cfg["DEVSTACK_NEO4J_BOLT_PORT"]))


def test_opa_serves_the_bundle(running_stack: dict[str, dict], cfg: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{cfg['DEVSTACK_OPA_PORT']}"
    code, _ = http_json(f"{base}/health?bundles=true")
    assert code == 200
    code, body = http_json(f"{base}/v1/policies")
    assert code == 200 and body["result"], "no policy loaded"


def test_llm_chat_completion(running_stack: dict[str, dict], cfg: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{cfg['DEVSTACK_LLM_PORT']}"
    key = {"Authorization": f"Bearer {cfg['DEVSTACK_LLM_API_KEY']}"}
    code, _ = http_json(f"{base}/v1/models", headers={"Authorization": "Bearer wrong"})
    assert code == 401
    code, body = http_json(f"{base}/v1/chat/completions", method="POST", headers=key, timeout=120, body={
        "model": cfg["DEVSTACK_LLM_MODEL"], "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hello."}]})
    assert code == 200, body
    assert body["model"] == cfg["DEVSTACK_LLM_MODEL"]
    assert body["choices"][0]["message"]["content"].strip()


def test_toxiproxy_proxies_redis(running_stack: dict[str, dict], cfg: dict[str, str]) -> None:
    api = f"http://127.0.0.1:{cfg['DEVSTACK_TOXIPROXY_PORT']}"
    listen = free_port()
    name = f"devstack_probe_{os.getpid()}"
    code, body = http_json(f"{api}/proxies", method="POST", body={
        "name": name, "listen": f"127.0.0.1:{listen}", "upstream": f"127.0.0.1:{cfg['DEVSTACK_REDIS_PORT']}"})
    assert code == 201, body
    try:
        with socket.create_connection(("127.0.0.1", listen), timeout=5) as s:
            assert resp_command(s, "AUTH", cfg["DEVSTACK_REDIS_PASSWORD"]) == "OK"
            assert resp_command(s, "PING") == "PONG"
        code, _ = http_json(f"{api}/proxies/{name}/toxics", method="POST", body={
            "name": "lag", "type": "latency", "attributes": {"latency": 300}})
        assert code == 200
        with socket.create_connection(("127.0.0.1", listen), timeout=5) as s:
            t0 = time.monotonic()
            resp_command(s, "AUTH", cfg["DEVSTACK_REDIS_PASSWORD"])
            assert time.monotonic() - t0 >= 0.25
    finally:
        http_json(f"{api}/proxies/{name}", method="DELETE")
