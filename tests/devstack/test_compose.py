"""docker-compose.yml cannot run here (no Docker): check it agrees with .env.example and devstack/stack.

Also: .env.example is the one source of the DEVSTACK_* defaults, and its KFM_* lines are exactly what
devstack derives from them (harness_env), so the two can never drift.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from devstack.config import defaults, harness_env, parse_env_file
from devstack.services import SERVICE_CLASSES
from tests.devstack.conftest import REPO

VAR = re.compile(r"\$\{(?P<name>[A-Z][A-Z0-9_]*)(?::?(?P<op>[-?])(?P<arg>[^}]*))?\}")

# container port of each service, and the .env.example variable that publishes it
PUBLISHED = {
    "postgis": {5432: "DEVSTACK_POSTGIS_PORT"},
    "opensearch": {9200: "DEVSTACK_OPENSEARCH_PORT"},
    "neo4j": {7687: "DEVSTACK_NEO4J_BOLT_PORT", 7474: "DEVSTACK_NEO4J_HTTP_PORT"},
    "redis": {6379: "DEVSTACK_REDIS_PORT"},
    "opa": {8181: "DEVSTACK_OPA_PORT"},
    "llm": {8011: "DEVSTACK_LLM_PORT"},
    "toxiproxy": {8474: "DEVSTACK_TOXIPROXY_PORT"},
    "prometheus": {9090: "DEVSTACK_PROMETHEUS_PORT"},
    "pushgateway": {9091: "DEVSTACK_PUSHGATEWAY_PORT"},
}

# credentials each service must take from the environment (never written into the compose file)
CREDENTIALS = {
    "postgis": {"DEVSTACK_PG_DATABASE", "DEVSTACK_PG_OWNER", "DEVSTACK_PG_OWNER_PASSWORD",
                "DEVSTACK_PG_READER", "DEVSTACK_PG_READER_PASSWORD"},
    "neo4j": {"DEVSTACK_NEO4J_PASSWORD"},
    "redis": {"DEVSTACK_REDIS_PASSWORD", "DEVSTACK_REDIS_READER", "DEVSTACK_REDIS_READER_PASSWORD"},
    "llm": {"DEVSTACK_LLM_API_KEY", "DEVSTACK_LLM_MODEL"},
}

# optional knobs with a default in the compose file; not part of .env.example
OPTIONAL = {"DEVSTACK_LLM_MODEL_DIR"}


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(REPO / ".env.example")


def _stack_part(env_file: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env_file.items() if k.startswith("DEVSTACK_")}


# the .env.example stack settings, and the same with every port and credential changed: the
# harness settings must follow either (they are derived, not copied)
OTHER_STACK = {
    "DEVSTACK_POSTGIS_PORT": "15432", "DEVSTACK_OPENSEARCH_PORT": "9280", "DEVSTACK_NEO4J_BOLT_PORT": "17687",
    "DEVSTACK_NEO4J_HTTP_PORT": "17474", "DEVSTACK_REDIS_PORT": "16379", "DEVSTACK_OPA_PORT": "18181",
    "DEVSTACK_LLM_PORT": "18011", "DEVSTACK_TOXIPROXY_PORT": "18474", "DEVSTACK_PROMETHEUS_PORT": "19090",
    "DEVSTACK_PUSHGATEWAY_PORT": "19091", "DEVSTACK_PG_DATABASE": "other_db",
    "DEVSTACK_PG_OWNER": "other_owner", "DEVSTACK_PG_OWNER_PASSWORD": "other owner pw",
    "DEVSTACK_PG_READER": "other_reader", "DEVSTACK_PG_READER_PASSWORD": "other reader pw",
    "DEVSTACK_NEO4J_PASSWORD": "other graph pw", "DEVSTACK_REDIS_PASSWORD": "other-cache-pw",
    "DEVSTACK_REDIS_READER": "other_cache_reader", "DEVSTACK_REDIS_READER_PASSWORD": "other-cache-reader-pw",
    "DEVSTACK_LLM_API_KEY": "other-llm-key", "DEVSTACK_LLM_MODEL": "other-model",
    "DEVSTACK_REDIS_TLS_PORT": "16390", "DEVSTACK_OPA_TLS_PORT": "18182", "DEVSTACK_OPENSEARCH_TLS_PORT": "19443",
    "DEVSTACK_LLM_TLS_PORT": "18012", "DEVSTACK_OPENSEARCH_NODE2_PORT": "9281",
    "DEVSTACK_POSTGIS_STANDBY_PORT": "15433",
}


@pytest.fixture(scope="module", params=["env-example", "other-stack"])
def stack_cfg(request: pytest.FixtureRequest, env_example: dict[str, str]) -> dict[str, str]:
    stack = _stack_part(env_example)
    if request.param == "other-stack":
        assert set(OTHER_STACK) == set(stack), "OTHER_STACK must change every DEVSTACK_* setting"
        stack = dict(OTHER_STACK)
    return stack


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def refs(node: object) -> list[re.Match[str]]:
    return list(VAR.finditer(yaml.safe_dump(node)))


def test_compose_has_every_service_with_healthchecks_and_volumes(compose: dict) -> None:
    assert sorted(compose["services"]) == sorted(PUBLISHED)  # the TLS terminator is devstack's only
    for name, svc in compose["services"].items():
        assert "image" in svc, name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ("postgis", "opensearch", "neo4j", "redis", "prometheus", "pushgateway"):
        volumes = compose["services"][name]["volumes"]
        named = [v.split(":", 1)[0] for v in volumes if not v.startswith((".", "/", "$"))]
        assert named and all(n in compose["volumes"] for n in named), name


@pytest.mark.parametrize("service", sorted(PUBLISHED))
def test_published_ports_match_env_example(compose: dict, env_example: dict[str, str], service: str) -> None:
    published: dict[int, str] = {}
    for spec in compose["services"][service]["ports"]:
        m = re.fullmatch(r"127\.0\.0\.1:\$\{(?P<var>[A-Z0-9_]+):-(?P<default>\d+)\}:(?P<cport>\d+)", spec)
        assert m, f"{service}: port {spec!r} is not of the form 127.0.0.1:${{DEVSTACK_..._PORT:-N}}:M"
        var, default, cport = m["var"], m["default"], int(m["cport"])
        assert var in env_example, f"{service}: {var} is not in .env.example"
        assert default == env_example[var], f"{service}: default {default} != .env.example {var}={env_example[var]}"
        published[cport] = var
    assert published == PUBLISHED[service]


def test_every_referenced_variable_is_in_env_example(compose: dict, env_example: dict[str, str]) -> None:
    for m in refs(compose):
        name = m["name"]
        if name in OPTIONAL:
            assert m["op"] == "-", f"optional {name} needs a default"
            continue
        assert name.startswith("DEVSTACK_"), f"compose uses {name}; only DEVSTACK_* names are shared"
        assert name in env_example, f"compose uses {name}, which .env.example does not define"


@pytest.mark.parametrize("service", sorted(CREDENTIALS))
def test_credentials_come_from_the_environment(compose: dict, env_example: dict[str, str], service: str) -> None:
    svc = compose["services"][service]
    used = {m["name"] for m in refs(svc)}
    assert CREDENTIALS[service] <= used, f"{service} misses {CREDENTIALS[service] - used}"
    text = yaml.safe_dump(svc)
    for var in CREDENTIALS[service]:
        if "PASSWORD" in var or "KEY" in var:
            assert env_example[var] not in text, f"{service}: the value of {var} is written into the compose file"
    for m in refs(svc):
        if m["name"] in CREDENTIALS[service] and m["op"] == "-":
            pytest.fail(f"{service}: credential {m['name']} must not have a default in the compose file")


def test_devstack_uses_the_same_port_variables(env_example: dict[str, str]) -> None:
    keys = {cls.name: set(cls.port_keys) for cls in SERVICE_CLASSES if cls.name in PUBLISHED}
    assert keys == {name: set(ports.values()) for name, ports in PUBLISHED.items()}
    # the TLS endpoints are devstack's only (compose publishes none): extra listeners, and the terminator
    assert {cls.name for cls in SERVICE_CLASSES} - set(PUBLISHED) == {"stunnel"}
    assert all(k in env_example for cls in SERVICE_CLASSES for k in cls.tls_port_keys)


def test_env_example_is_the_one_source_of_the_devstack_defaults(env_example: dict[str, str]) -> None:
    assert defaults() == _stack_part(env_example)
    copies = []
    for path in sorted((REPO / "devstack").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for key, value in _stack_part(env_example).items():
            literal = (f'"{value}"', f"'{value}'") if value.isdigit() else (value,)
            if len(value) >= 4 and any(v in text for v in literal):
                copies.append(f"{path.relative_to(REPO)}: {key}={value}")
    assert not copies, "devstack repeats .env.example values instead of reading them:\n" + "\n".join(copies)


def test_env_example_harness_lines_are_what_devstack_derives(env_example: dict[str, str]) -> None:
    written = {k: v for k, v in env_example.items() if k.startswith("KFM_")}
    derived = harness_env(_stack_part(env_example))
    assert written == derived, ("the KFM_* lines of .env.example drifted from the DEVSTACK_* values "
                                "(write what `devstack/stack env` prints)")


def _port(url: str) -> str:
    return str(urlsplit(url).port)


def test_harness_settings_point_at_the_stack(stack_cfg: dict[str, str]) -> None:
    e = {**stack_cfg, **harness_env(stack_cfg)}
    assert _port(e["KFM_POSTGIS__DSN"]) == e["DEVSTACK_POSTGIS_PORT"]
    assert _port(e["KFM_POSTGIS__WRITE_DSN"]) == e["DEVSTACK_POSTGIS_PORT"]
    assert _port(e["KFM_GRAPH__URL"]) == e["DEVSTACK_NEO4J_BOLT_PORT"]
    assert _port(e["KFM_SEARCH__URL"]) == e["DEVSTACK_OPENSEARCH_PORT"]
    assert _port(e["KFM_CACHE__URL"]) == e["DEVSTACK_REDIS_PORT"]
    assert _port(e["KFM_POLICY__URL"]) == e["DEVSTACK_OPA_PORT"]
    assert _port(e["KFM_LLM__URL"]) == e["DEVSTACK_LLM_PORT"]
    for key in ("KFM_POSTGIS__DSN", "KFM_POSTGIS__WRITE_DSN", "KFM_GRAPH__URL", "KFM_SEARCH__URL",
                "KFM_CACHE__URL", "KFM_POLICY__URL", "KFM_LLM__URL"):
        assert urlsplit(e[key]).hostname in ("127.0.0.1", "localhost"), key


def test_the_replica_setting_points_at_the_standby(stack_cfg: dict[str, str]) -> None:
    """``env --postgis-standby``: heavy reads from the standby, as the reader; without it, no replica setting."""
    assert "KFM_POSTGIS__REPLICA_DSN" not in harness_env(stack_cfg)
    e = harness_env(stack_cfg, replica=True)
    replica, primary = urlsplit(e["KFM_POSTGIS__REPLICA_DSN"]), urlsplit(e["KFM_POSTGIS__DSN"])
    assert str(replica.port) == stack_cfg["DEVSTACK_POSTGIS_STANDBY_PORT"]
    assert (replica.username, replica.path, replica.query) == (primary.username, primary.path, primary.query)


def test_harness_credentials_match_the_stack(stack_cfg: dict[str, str]) -> None:
    e = {**stack_cfg, **harness_env(stack_cfg)}
    dsn, write_dsn = urlsplit(e["KFM_POSTGIS__DSN"]), urlsplit(e["KFM_POSTGIS__WRITE_DSN"])
    assert dsn.username == e["DEVSTACK_PG_READER"] and dsn.path == "/" + e["DEVSTACK_PG_DATABASE"]
    assert write_dsn.username == e["DEVSTACK_PG_OWNER"] and write_dsn.path == "/" + e["DEVSTACK_PG_DATABASE"]
    assert e["KFM_POSTGIS__PASSWORD"] == e["DEVSTACK_PG_READER_PASSWORD"]
    assert e["KFM_POSTGIS__WRITE_PASSWORD"] == e["DEVSTACK_PG_OWNER_PASSWORD"]
    assert e["KFM_GRAPH__USERNAME"] == "neo4j"
    assert e["KFM_GRAPH__PASSWORD"] == e["DEVSTACK_NEO4J_PASSWORD"]
    assert e["KFM_CACHE__USERNAME"] == e["DEVSTACK_REDIS_READER"]
    assert e["KFM_CACHE__PASSWORD"] == e["DEVSTACK_REDIS_READER_PASSWORD"]
    assert e["KFM_CACHE__WRITE_USERNAME"] == "default"
    assert e["KFM_CACHE__WRITE_PASSWORD"] == e["DEVSTACK_REDIS_PASSWORD"]
    assert e["KFM_LLM__API_KEY"] == e["DEVSTACK_LLM_API_KEY"]
    assert e["KFM_LLM__MODEL"] == e["DEVSTACK_LLM_MODEL"]


def test_compose_prometheus_scrapes_the_pushgateway_like_devstack(compose: dict) -> None:
    """Both routes run one Prometheus config (devstack generates it, compose mounts the same text) and the rules."""
    from devstack.services.prometheus import RULES, prometheus_config

    svc = compose["services"]["prometheus"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"] if v.startswith("./")}
    config_file = REPO / mounted["/etc/prometheus/prometheus.yml"]
    assert config_file.read_text() == prometheus_config("pushgateway:9091", "/etc/prometheus/kfm-ops.rules.yml")
    assert REPO / mounted["/etc/prometheus/kfm-ops.rules.yml"] == RULES and RULES.is_file()
    config = yaml.safe_load(config_file.read_text())
    (scrape,) = config["scrape_configs"]
    assert scrape["honor_labels"] is True, "pushed job/environment labels must survive the scrape"
    assert scrape["static_configs"] == [{"targets": ["pushgateway:9091"]}]
    assert config["global"]["scrape_interval"] == "1s"
    assert "--config.file=/etc/prometheus/prometheus.yml" in svc["command"]
    assert compose["services"]["pushgateway"]["image"].startswith("prom/pushgateway:v1.5")
    assert svc["image"].startswith("prom/prometheus:v2.42")


def test_compose_opa_serves_the_repo_policy_bundle(compose: dict) -> None:
    svc = compose["services"]["opa"]
    assert "./kfm_ops/contracts/policy:/policy:ro" in svc["volumes"]
    cmd = svc["command"]
    assert cmd[cmd.index("--bundle") + 1] == "/policy"


# --------------------------------------------------------------------------- no secret on a command line
SECRET_REF = re.compile(r"\$\$\{?(?P<name>DEVSTACK_\w*(?:PASSWORD|API_KEY)|LLAMA_API_KEY)\b\}?")
# the two ways a healthcheck may hand a secret on: an environment assignment in front of the command
# (`PGPASSWORD="$$X" psql ...`), or the shell builtin printf piped into a command that reads stdin
SECRET_HANDOFF = re.compile(r"""(?:^|[\s;&|(])[A-Z_][A-Z0-9_]*="\$\$\{?\w+\}?"(?=\s+\S)"""
                            r"""|printf '[^']*' "\$\$\{?\w+\}?" \|""")


@pytest.mark.parametrize("service", sorted(PUBLISHED))
def test_no_credential_on_a_command_line(compose: dict, service: str) -> None:
    svc = compose["services"][service]
    for key in ("command", "entrypoint"):
        if key in svc:
            text = yaml.safe_dump(svc[key])
            used = {m["name"] for m in refs(svc[key])} | {m["name"] for m in SECRET_REF.finditer(text)}
            secret = {n for n in used if "PASSWORD" in n or "KEY" in n}
            assert not secret, f"{service}: {key} carries {secret}; pass credentials through the environment"
    test = svc["healthcheck"]["test"]
    shell = test[1] if test[0] == "CMD-SHELL" else " ".join(test[1:])
    left = SECRET_REF.findall(SECRET_HANDOFF.sub(" ", shell))
    assert not left, f"{service}: the healthcheck puts {left} on a command line: {shell}"


def test_the_secret_handoff_patterns_catch_argv() -> None:
    assert SECRET_REF.findall(SECRET_HANDOFF.sub(" ", 'redis-cli -a "$$DEVSTACK_REDIS_PASSWORD" ping'))
    assert SECRET_REF.findall(SECRET_HANDOFF.sub(" ", 'curl -H "Bearer $$LLAMA_API_KEY" x'))
    assert not SECRET_REF.findall(SECRET_HANDOFF.sub(" ", 'REDISCLI_AUTH="$$DEVSTACK_REDIS_PASSWORD" redis-cli ping'))


def _fake(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text("#!/bin/sh\n" + body)
    (bin_dir / name).chmod(0o755)


def test_compose_redis_start_writes_the_passwords_to_a_0600_file(tmp_path: Path) -> None:
    """devstack/compose/redis-start.sh, run with a stand-in redis-server that reports what it got."""
    _fake(tmp_path / "bin", "redis-server",
          'echo "ARGS: $*"; echo "MODE: $(stat -c %a "$1")"; cat "$1"\n')
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "TMPDIR": str(tmp_path),
           "DEVSTACK_REDIS_PASSWORD": "owner-pw-1", "DEVSTACK_REDIS_READER": "kfm_reader",
           "DEVSTACK_REDIS_READER_PASSWORD": "reader-pw-2"}
    res = subprocess.run(["sh", str(REPO / "devstack/compose/redis-start.sh")], env=env, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    args = next(ln for ln in res.stdout.splitlines() if ln.startswith("ARGS: "))
    assert "owner-pw-1" not in args and "reader-pw-2" not in args
    assert "MODE: 600" in res.stdout
    assert "requirepass owner-pw-1" in res.stdout
    assert "user kfm_reader on >reader-pw-2 " in res.stdout and "maxmemory-policy volatile-lru" in res.stdout


def test_compose_postgis_init_gives_psql_no_password_argument(tmp_path: Path) -> None:
    """devstack/compose/postgis-init.sh, with a stand-in psql that records its arguments and stdin."""
    _fake(tmp_path / "bin", "psql", f'echo "$*" > {tmp_path}/argv; cat > {tmp_path}/stdin\n')
    script = (REPO / "devstack/compose/postgis-init.sh").read_text().replace(
        "/devstack/bootstrap.sql", str(REPO / "devstack/postgis/bootstrap.sql"))
    (tmp_path / "init.sh").write_text(script)
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "PGDATA": str(pgdata),
           "DEVSTACK_PG_DATABASE": "kfm", "DEVSTACK_PG_OWNER": "kfm_owner", "DEVSTACK_PG_OWNER_PASSWORD": "owner-pw-1",
           "DEVSTACK_PG_READER": "kfm_reader", "DEVSTACK_PG_READER_PASSWORD": "reader-pw-2"}
    res = subprocess.run(["sh", str(tmp_path / "init.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    argv, stdin = (tmp_path / "argv").read_text(), (tmp_path / "stdin").read_text()
    assert "pw" not in argv and "-f -" in argv
    for var, env_name in (("db", "DEVSTACK_PG_DATABASE"), ("owner", "DEVSTACK_PG_OWNER"),
                          ("owner_pw", "DEVSTACK_PG_OWNER_PASSWORD"), ("reader", "DEVSTACK_PG_READER"),
                          ("reader_pw", "DEVSTACK_PG_READER_PASSWORD")):
        assert f"\\getenv {var} {env_name}\n" in stdin
    assert "ALTER ROLE" in stdin and "owner-pw-1" not in stdin
    assert "scram-sha-256" in (pgdata / "pg_hba.conf").read_text()
