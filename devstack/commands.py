"""The commands: install, up, down, status, logs, reset and env."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devstack.config import Stack, harness_env
from devstack.errors import ProbeError, StackError, say
from devstack.install import TOOL_STEPS, ensure_installed
from devstack.net import port_free, port_holders
from devstack.processes import proc_comm, tail_lines
from devstack.sensitive import redact
from devstack.services import Service, services
from devstack.services.opensearch import CLUSTERED, SINGLE, OpenSearch


def steps_of(svcs: list[Service]) -> list[str]:
    wanted: list[str] = []
    for svc in svcs:
        for sname in svc.steps:
            if sname not in wanted:
                wanted.append(sname)
    return wanted


def foreign_port_message(svc: Service, key: str, port: int) -> str:
    holders = [p for p in port_holders(port) if p != os.getpid()]
    who = ", ".join(f"pid {p} ({proc_comm(p)})" for p in holders[:3])
    return (f"devstack: {svc.name} cannot start: port 127.0.0.1:{port} ({key}) is already in use by "
            f"{who or 'another process'} that is not part of this devstack. Stop that process or set {key} "
            f"to a free port (in .env or the environment), then run `devstack/stack up {svc.name}` again. "
            f"Log file: {svc.log}")


def record_failure(svc: Service, message: str) -> str:
    """Append a failure to the service's log; returns it (both with every secret masked)."""
    message = redact(message, svc.st.cfg)
    with contextlib.suppress(OSError):
        svc.log.parent.mkdir(parents=True, exist_ok=True)
        with svc.log.open("a") as f:
            f.write(f"=== devstack {time.strftime('%Y-%m-%d %H:%M:%S')}: FAILED: {message}\n")
    return message


def _log_excerpt(log: Path, offset: int, cfg: Mapping[str, str]) -> str:
    """The log's last error line since ``offset``, secrets masked before it is cut."""
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
    return f" (log says: {redact(last, cfg)[:300]})"


def _start_all(st: Stack, svcs: list[Service], failures: list[str]) -> dict[str, tuple[Service, float, float, int]]:
    """Start every service that is not running; name -> (service, t0, deadline, log offset)."""
    pending: dict[str, tuple[Service, float, float, int]] = {}
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
    return pending


def _wait_ready(st: Stack, pending: dict[str, tuple[Service, float, float, int]], failures: list[str]) -> None:
    last_err: dict[str, str] = {}
    while pending:
        for name, (svc, t0, deadline, offset) in list(pending.items()):
            child = st.children.get(name)
            exited = child.poll() if child is not None else None
            if exited is None and child is None and not svc.procs():
                exited = -1
            if exited is not None:
                excerpt = _log_excerpt(svc.log, offset, svc.st.cfg)
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


def _with(st: Stack, svcs: list[Service], names: list[str]) -> list[Service]:
    """``svcs`` plus the services ``names`` (the same instances where already there), in start order."""
    have = {s.name for s in svcs}
    extra = [s for s in services(st, names) if s.name not in have]
    order = [s.name for s in services(st, optional=True)]
    return sorted([*svcs, *extra], key=lambda s: order.index(s.name))


def _opensearch_topology(svcs: list[Service], nodes: int | None) -> None:
    """Give node 1 the mode ``nodes`` asks for; stop what runs in another topology (it starts again below).

    ``None`` (no option given) leaves a running node as it is: a plain ``up`` never restarts anything.
    """
    node1 = next((s for s in svcs if isinstance(s, OpenSearch) and s.node == 1), None)
    node2 = next((s for s in svcs if isinstance(s, OpenSearch) and s.node == 2), None)
    if node1 is None:
        return
    running = node1.running_mode() if node1.procs() else None
    if nodes is None:
        node1.mode = running or SINGLE
        return
    node1.mode = CLUSTERED if nodes == 2 else SINGLE
    if nodes == 1 and node2 is not None and node2.procs():
        say(f"{node2.name:<10} {node2.stop()} (--opensearch-nodes 1)")
    if running is not None and running != node1.mode:
        say(f"{node1.name:<10} {node1.stop()}: restarting as {'a two-node cluster' if nodes == 2 else 'a single node'}")


def cmd_up(st: Stack, names: list[str], *, opensearch_nodes: int | None = None, standby: bool = False) -> int:
    """Start ``names`` (default: every non-optional service); ``opensearch_nodes`` 1 or 2 and ``standby`` add
    the optional services (they start once the first wave is ready: each needs the service it follows)."""
    t_all = time.monotonic()
    svcs = services(st, names)
    named = {s.name for s in svcs}
    if "opensearch-2" in named:
        if opensearch_nodes == 1:
            raise StackError("`up opensearch-2` and --opensearch-nodes 1 contradict each other")
        opensearch_nodes = 2
    standby = standby or "postgis-standby" in named
    if standby:
        svcs = _with(st, svcs, ["postgis", "postgis-standby"])
    if opensearch_nodes == 2:
        svcs = _with(st, svcs, ["opensearch", "opensearch-2"])
    elif opensearch_nodes == 1:
        svcs = _with(st, svcs, ["opensearch", "opensearch-2"])  # node 2 only to be stopped
    failures: list[str] = []
    with st.lock():
        _opensearch_topology(svcs, opensearch_nodes)
        if opensearch_nodes == 1:
            svcs = [s for s in svcs if s.name != "opensearch-2"]
        ensure_installed(st, steps_of(svcs), verbose=False)
        for wave in ([s for s in svcs if not s.optional], [s for s in svcs if s.optional]):
            if wave:
                _wait_ready(st, _start_all(st, wave, failures), failures)
    for msg in failures:
        print(msg, file=sys.stderr, flush=True)
    if failures:
        return 1
    say(f"devstack up: {len(svcs)} service(s) ready in {time.monotonic() - t_all:.1f}s")
    return 0


def cmd_down(st: Stack, names: list[str]) -> int:
    svcs = services(st, names, optional=True)
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
    for svc in services(st, optional=True):
        if svc.optional and not svc.procs():
            continue  # an optional service is listed while it runs (`up --postgis-standby`, `--opensearch-nodes 2`)
        row: dict[str, Any] = {"name": svc.name, "title": svc.title, "log": str(svc.log)}
        try:
            ports = svc.ports()
            row["port"] = ports[0][1]
            row["ports"] = dict(ports)
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
    """Every service's install steps, then the validators the test suite uses (TOOL_STEPS)."""
    steps = steps_of(services(st))
    with st.lock():
        ensure_installed(st, steps + [s for s in TOOL_STEPS if s not in steps], verbose=True)
    return 0


def cmd_reset(st: Stack) -> int:
    rc = cmd_down(st, [])
    if rc != 0:
        print("devstack: not deleting the state dir because some processes could not be stopped", file=sys.stderr)
        return rc
    for name in ("postgis", "postgis-standby"):
        pg = st.state / name
        if pg.is_symlink():
            shutil.rmtree(pg.resolve(), ignore_errors=True)
    shutil.rmtree(st.state, ignore_errors=True)
    say(f"removed {st.state} (user caches ~/.m2, Go caches and ~/.cache/pip are kept)")
    return 0


def env_exports(cfg: dict[str, str], *, tls: bool = False, replica: bool = False) -> dict[str, str]:
    """What ``env`` prints: the derived harness settings, then KFM_* set in .env or the environment."""
    out = harness_env(cfg, tls=tls, replica=replica)
    out.update({k: v for k, v in cfg.items() if k.startswith("KFM_")})
    return out


def cmd_env(st: Stack, tls: bool = False, replica: bool = False) -> int:
    for key, value in env_exports(st.cfg, tls=tls, replica=replica).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0
