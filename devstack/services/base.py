"""The Service base class: configuration, process bookkeeping and start/stop of one server."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from devstack.config import MARK, Stack
from devstack.processes import launch, process_tree, read_pidfile, terminate, write_pidfile
from devstack.sensitive import redact


class Service:
    name = ""
    title = ""
    pinned = ""
    port_keys: tuple[str, ...] = ()
    tls_port_keys: tuple[str, ...] = ()  # extra listeners for TLS (the docker compose route has none)
    steps: tuple[str, ...] = ()
    timeout = 60.0
    stop_signal = signal.SIGTERM
    stop_timeout = 20.0
    run_as_postgres = False
    optional = False  # started only when asked for (an option of `up`); `down` stops it, `status` shows it when up

    def __init__(self, st: Stack) -> None:
        self.st = st
        self.dir = st.state / self.name

    # ---- configuration
    def ports(self) -> list[tuple[str, int]]:
        return [(k, self.st.port(k)) for k in (*self.port_keys, *self.tls_port_keys)]

    @property
    def port(self) -> int:
        return self.ports()[0][1]

    @property
    def log(self) -> Path:
        return self.st.log_path(self.name)

    @property
    def pidfile(self) -> Path:
        return self.st.run / f"{self.name}.pid"

    def base_env(self, **extra: str) -> dict[str, str]:
        """A child's environment: PATH and what the service asks for, nothing else inherited."""
        return {"PATH": os.environ.get("PATH", ""), **extra}

    def validate(self) -> None:
        """Raise StackError for configuration this service cannot use."""

    def prepare(self) -> None:
        """Generate config and initialise data before a start."""

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment and working directory of the server (no secret in argv)."""
        raise NotImplementedError

    def probe(self) -> str:
        """A real query; returns the version string or raises ProbeError."""
        raise NotImplementedError

    def start_probe(self) -> str:
        """Probe used while starting (may do one-time bootstrap work)."""
        return self.probe()

    def version_hint(self) -> str:
        return self.pinned

    # ---- process bookkeeping
    def recorded(self) -> tuple[int, int] | None:
        return read_pidfile(self.pidfile)

    def procs(self) -> list[int]:
        """Every live process of ours for this service: the leader, its session, its descendants."""
        return process_tree(self.recorded())

    # ---- actions
    def spawn(self) -> subprocess.Popen[bytes]:
        argv, env, cwd = self.command()
        env = dict(env)
        env[MARK] = f"{self.st.ident}:{self.name}"
        shown = shlex.join(redact(a, self.st.cfg) for a in argv)  # argv holds no secret; masked all the same
        proc = launch(self.name, argv, env, cwd, self.log, shown=shown,
                      as_postgres=self.run_as_postgres and self.st.is_root)
        write_pidfile(self.pidfile, proc.pid)
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
        killed = terminate(self.name, self.procs, lead, stop_signal=self.stop_signal,
                           stop_timeout=self.stop_timeout, reap=self.reap, log=self.log)
        self.pidfile.unlink(missing_ok=True)
        how = "killed after timeout" if killed else "stopped"
        return f"{how} (pid {lead}, {time.monotonic() - t0:.1f}s)"

    def reap(self) -> None:
        proc = self.st.children.get(self.name)
        if proc is not None:
            proc.poll()
