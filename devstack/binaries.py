"""Where the stack installed each binary and jar set (honours DEVSTACK_HOME).

Each binary comes from one place: the stack's own bin/ (Go builds), the PostgreSQL bin dir, or
the Debian package's path. The services, the tests, benchmarks and tools all ask here instead
of searching PATH, so a stray binary of one machine is never what they run.
"""

from __future__ import annotations

import os
from pathlib import Path

from devstack.config import Stack, load_config
from devstack.errors import StackError
from devstack.pins import PG_BIN

GO_BINARIES = {"opa": "opa", "toxiproxy": "server", "actionlint": "actionlint"}  # name -> file in the stack's bin/
PG_BINARIES = ("initdb", "pg_ctl", "pg_basebackup", "postgres", "psql")
APT_BINARIES = {"redis-server": "/usr/bin/redis-server", "check_postgres": "/usr/bin/check_postgres",
                "prometheus": "/usr/bin/prometheus", "prometheus-pushgateway": "/usr/bin/prometheus-pushgateway",
                "promtool": "/usr/bin/promtool", "chromium": "/usr/bin/chromium",
                "systemd-analyze": "/usr/bin/systemd-analyze", "openssl": "/usr/bin/openssl",
                "stunnel4": "/usr/bin/stunnel4"}
NPM_BINARIES = {"dockerfilelint": "dockerfilelint"}  # name -> file in the stack's node/node_modules/.bin/
JAR_SETS = ("opensearch", "neo4j")  # Maven components copied to the stack's lib/<component>


def locate(name: str, bin_dir: Path) -> Path:
    """Where binary ``name`` is installed for a stack whose own bin/ is ``bin_dir`` (not checked)."""
    if name in GO_BINARIES:
        return bin_dir / GO_BINARIES[name]
    if name in PG_BINARIES:
        return PG_BIN / name
    if name in APT_BINARIES:
        return Path(APT_BINARIES[name])
    if name in NPM_BINARIES:
        return bin_dir.parent / "node" / "node_modules" / ".bin" / NPM_BINARIES[name]
    known = ", ".join([*GO_BINARIES, *PG_BINARIES, *APT_BINARIES, *NPM_BINARIES])
    raise StackError(f"devstack installs no binary {name!r} (known: {known})")


def binary(name: str, cfg: dict[str, str] | None = None) -> Path:
    """The path of the stack binary ``name`` as this devstack installs it (honours DEVSTACK_HOME).

    Raises StackError for a name the stack does not install, or when it is not installed yet.
    """
    path = locate(name, Stack(cfg if cfg is not None else load_config()).bin)
    if not os.access(path, os.X_OK):
        raise StackError(f"{name} is not installed at {path}: run `devstack/stack install`")
    return path


def jars(component: str, cfg: dict[str, str] | None = None) -> Path:
    """The directory of a jar set the stack installed (``opensearch`` or ``neo4j``): a classpath dir.

    Raises StackError for an unknown component, or when its jars are not installed yet.
    """
    if component not in JAR_SETS:
        raise StackError(f"devstack installs no jar set {component!r} (known: {', '.join(JAR_SETS)})")
    path = Stack(cfg if cfg is not None else load_config()).lib / component
    if not any(path.glob("*.jar")):
        raise StackError(f"the {component} jars are not installed in {path}: run `devstack/stack install`")
    return path


def opensearch_jars(cfg: dict[str, str] | None = None) -> Path:
    """The OpenSearch runner jars (``.devstack/lib/opensearch``), for a throw-away node of one's own."""
    return jars("opensearch", cfg)
