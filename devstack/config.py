"""Configuration: the env files, the stack's defaults, the harness settings and the state paths.

``.env.example`` is the one source of the ``DEVSTACK_*`` defaults (no copy of them lives in
Python); ``.env`` and then the process environment override them (later wins). The harness's
``KFM_*`` settings are derived from the ``DEVSTACK_*`` values by :func:`harness_env`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

from devstack.errors import StackError

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "devstack"
ENV_EXAMPLE = REPO / ".env.example"
MARK = "KFM_DEVSTACK_ID"  # set in every child's environment (for diagnostics)

# fixed parts of the harness settings (the Neo4j and Redis owner accounts have fixed names)
GRAPH_USER = "neo4j"
CACHE_OWNER = "default"
TLS_SERVICES = ("POSTGIS", "GRAPH", "SEARCH", "CACHE", "POLICY", "LLM")


def parse_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def defaults() -> dict[str, str]:
    """The ``DEVSTACK_*`` lines of ``.env.example``: the stack's defaults."""
    if not ENV_EXAMPLE.is_file():
        raise StackError(f"{ENV_EXAMPLE} is missing; it holds the stack's default ports and credentials")
    return {k: v for k, v in parse_env_file(ENV_EXAMPLE).items() if k.startswith("DEVSTACK_")}


def load_config() -> dict[str, str]:
    """``.env.example`` (DEVSTACK_* only), then ``.env``, then the environment: later wins."""
    cfg = defaults()
    cfg.update(parse_env_file(REPO / ".env"))
    for key, value in os.environ.items():
        if key.startswith(("DEVSTACK_", "KFM_")):
            cfg[key] = value
    return cfg


def harness_env(cfg: Mapping[str, str], *, tls: bool = False, replica: bool = False) -> dict[str, str]:
    """The harness's ``KFM_*`` settings for this stack, derived from the ``DEVSTACK_*`` values.

    ``tls``: the same accounts over the stack's TLS endpoints, each verified against the stack's CA and
    presenting its client certificate (``KFM_<SERVICE>__CA_FILE``, ``__CLIENT_CERT``, ``__CLIENT_KEY``).
    PostgreSQL and Neo4j serve TLS on their usual port; Redis, OPA, OpenSearch and the LLM on their own.
    ``replica``: heavy reads from the streaming standby (``up --postgis-standby``): ``KFM_POSTGIS__REPLICA_DSN``.
    """
    c = cfg

    def user(key: str) -> str:
        return quote(c[key], safe="")

    def at(port_key: str) -> str:
        return f"127.0.0.1:{c[port_key]}"

    pg = f"{at('DEVSTACK_POSTGIS_PORT')}/{quote(c['DEVSTACK_PG_DATABASE'], safe='')}"
    # plaintext says so (sslmode=disable: no silent opportunistic TLS); with TLS, the CA file makes it verify-full
    pg_mode = "" if tls else "?sslmode=disable"
    s = "s" if tls else ""
    env = {
        "KFM_ENVIRONMENT": "dev",
        "KFM_POSTGIS__DSN": f"postgresql://{user('DEVSTACK_PG_READER')}@{pg}{pg_mode}",
        "KFM_POSTGIS__PASSWORD": c["DEVSTACK_PG_READER_PASSWORD"],
        "KFM_POSTGIS__WRITE_DSN": f"postgresql://{user('DEVSTACK_PG_OWNER')}@{pg}{pg_mode}",
        "KFM_POSTGIS__WRITE_PASSWORD": c["DEVSTACK_PG_OWNER_PASSWORD"],
        "KFM_GRAPH__URL": f"{'bolt+s' if tls else 'bolt'}://{at('DEVSTACK_NEO4J_BOLT_PORT')}",
        "KFM_GRAPH__USERNAME": GRAPH_USER,
        "KFM_GRAPH__PASSWORD": c["DEVSTACK_NEO4J_PASSWORD"],
        "KFM_SEARCH__URL": f"http{s}://{at('DEVSTACK_OPENSEARCH_TLS_PORT' if tls else 'DEVSTACK_OPENSEARCH_PORT')}",
        "KFM_CACHE__URL": f"redis{s}://{at('DEVSTACK_REDIS_TLS_PORT' if tls else 'DEVSTACK_REDIS_PORT')}/0",
        "KFM_CACHE__USERNAME": c["DEVSTACK_REDIS_READER"],
        "KFM_CACHE__PASSWORD": c["DEVSTACK_REDIS_READER_PASSWORD"],
        "KFM_CACHE__WRITE_USERNAME": CACHE_OWNER,
        "KFM_CACHE__WRITE_PASSWORD": c["DEVSTACK_REDIS_PASSWORD"],
        "KFM_POLICY__URL": f"http{s}://{at('DEVSTACK_OPA_TLS_PORT' if tls else 'DEVSTACK_OPA_PORT')}",
        "KFM_LLM__URL": f"http{s}://{at('DEVSTACK_LLM_TLS_PORT' if tls else 'DEVSTACK_LLM_PORT')}",
        "KFM_LLM__API_KEY": c["DEVSTACK_LLM_API_KEY"],
        "KFM_LLM__MODEL": c["DEVSTACK_LLM_MODEL"],
    }
    if replica:
        standby = f"{at('DEVSTACK_POSTGIS_STANDBY_PORT')}/{quote(c['DEVSTACK_PG_DATABASE'], safe='')}"
        env["KFM_POSTGIS__REPLICA_DSN"] = f"postgresql://{user('DEVSTACK_PG_READER')}@{standby}{pg_mode}"
    if tls:
        files = state_dir(cfg) / "tls"
        for service in TLS_SERVICES:
            env[f"KFM_{service}__CA_FILE"] = str(files / "ca.crt")
            env[f"KFM_{service}__CLIENT_CERT"] = str(files / "client.crt")
            env[f"KFM_{service}__CLIENT_KEY"] = str(files / "client.key")
    return env


def state_dir(cfg: Mapping[str, str]) -> Path:
    """Where a stack keeps its state: ``$DEVSTACK_HOME`` or ``.devstack/`` in the checkout."""
    return Path(cfg.get("DEVSTACK_HOME") or str(REPO / ".devstack")).expanduser().resolve()


class Stack:
    """One devstack: its configuration and where its state lives (``.devstack/`` or $DEVSTACK_HOME)."""

    def __init__(self, cfg: dict[str, str]) -> None:
        self.cfg = cfg
        self.state = state_dir(cfg)
        self.ident = hashlib.sha256(str(self.state).encode()).hexdigest()[:10]
        self.logs = self.state / "logs"
        self.run = self.state / "run"
        self.lib = self.state / "lib"
        self.bin = self.state / "bin"
        self.stamps = self.state / "stamps"
        self.llm_venv = self.state / "llm-venv"
        self.is_root = os.geteuid() == 0
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def port(self, key: str) -> int:
        raw = self.cfg.get(key, "")
        try:
            port = int(raw)
        except ValueError:
            raise StackError(f"{key}={raw!r} is not a port number") from None
        if not 0 < port < 65536:
            raise StackError(f"{key}={port} is not a valid TCP port")
        return port

    def mkdirs(self) -> None:
        for d in (self.state, self.logs, self.run, self.lib, self.bin, self.stamps):
            d.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.mkdirs()
        with (self.state / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- stamps: an install step is done when its stamp holds the same spec
    def stamp_ok(self, name: str, spec: str) -> bool:
        p = self.stamps / name
        return p.is_file() and p.read_text() == spec

    def stamp_set(self, name: str, spec: str) -> None:
        self.stamps.mkdir(parents=True, exist_ok=True)
        (self.stamps / name).write_text(spec)
