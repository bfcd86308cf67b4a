"""docker-compose.yml cannot run here (no Docker): check it agrees with .env.example and devstack/stack."""

from __future__ import annotations

import re
from types import ModuleType
from urllib.parse import urlsplit

import pytest
import yaml

from tests.devstack.conftest import REPO, SERVICES

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
def env_example(stackmod: ModuleType) -> dict[str, str]:
    return stackmod.parse_env_file(REPO / ".env.example")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def refs(node: object) -> list[re.Match[str]]:
    return list(VAR.finditer(yaml.safe_dump(node)))


def test_compose_has_the_seven_services_with_healthchecks_and_volumes(compose: dict) -> None:
    assert sorted(compose["services"]) == sorted(SERVICES)
    for name, svc in compose["services"].items():
        assert "image" in svc, name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ("postgis", "opensearch", "neo4j", "redis"):
        volumes = compose["services"][name]["volumes"]
        named = [v.split(":", 1)[0] for v in volumes if not v.startswith((".", "/", "$"))]
        assert named and all(n in compose["volumes"] for n in named), name


@pytest.mark.parametrize("service", SERVICES)
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


def test_devstack_uses_the_same_port_variables(stackmod: ModuleType, env_example: dict[str, str]) -> None:
    keys = {cls.name: set(cls.port_keys) for cls in stackmod.SERVICE_CLASSES}
    assert keys == {name: set(ports.values()) for name, ports in PUBLISHED.items()}
    for key, value in stackmod.DEFAULTS.items():
        assert env_example.get(key) == value, f"devstack/stack.py default {key}={value} disagrees with .env.example"


def _port(url: str) -> str:
    return str(urlsplit(url).port)


def test_harness_settings_point_at_the_stack(env_example: dict[str, str]) -> None:
    e = env_example
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


def test_harness_credentials_match_the_stack(env_example: dict[str, str]) -> None:
    e = env_example
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


def test_compose_opa_serves_the_repo_policy_bundle(compose: dict) -> None:
    svc = compose["services"]["opa"]
    assert "./kfm_ops/contracts/policy:/policy:ro" in svc["volumes"]
    cmd = svc["command"]
    assert cmd[cmd.index("--bundle") + 1] == "/policy"
