"""PostgreSQL + PostGIS: its own cluster (initdb), bootstrapped roles, probed over TCP with a password."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from devstack.binaries import locate
from devstack.config import HERE, Stack
from devstack.errors import ProbeError, StackError, warn
from devstack.pins import PG_MAJOR
from devstack.processes import stamp_line
from devstack.scram import scram_sha256
from devstack.services.base import Service
from devstack.tls import TlsFiles, ensure_certs, install_copy, tls_dir

# psql variables of devstack/postgis/bootstrap.sql, read with \getenv from psql's environment
# (the role passwords as SCRAM verifiers: the server never sees the cleartext)
BOOTSTRAP_VARS = (("db", "DEVSTACK_PG_DATABASE"), ("owner", "DEVSTACK_PG_OWNER"),
                  ("owner_pw", "DEVSTACK_PG_OWNER_SCRAM"), ("reader", "DEVSTACK_PG_READER"),
                  ("reader_pw", "DEVSTACK_PG_READER_SCRAM"))


class PostGIS(Service):
    name = "postgis"
    title = "PostgreSQL + PostGIS"
    pinned = f"PostgreSQL {PG_MAJOR} + PostGIS 3 (Debian)"
    port_keys = ("DEVSTACK_POSTGIS_PORT",)
    steps = ("apt-postgis", "apt-openssl")
    timeout = 60.0
    stop_signal = signal.SIGINT  # fast shutdown
    stop_timeout = 30.0
    run_as_postgres = True
    fallback_suffix = ""  # of the /var/tmp data root, when the state dir is out of the postgres user's reach

    def __init__(self, st: Stack) -> None:
        super().__init__(st)
        self._bootstrapped = False

    def pg(self, name: str) -> str:
        return str(locate(name, self.st.bin))

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
        fallback = Path("/var/tmp") / f"kfm-devstack-{self.st.ident}{self.fallback_suffix}"  # noqa: S108  machine-path: documented fallback, per stack
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
        postgres = locate("postgres", self.st.bin)
        if not postgres.exists():
            raise StackError(f"postgis: {postgres} not found (install postgresql-{PG_MAJOR})")

    def _owner_ids(self) -> tuple[int, int]:
        """uid and gid of the server's OS user when we run as root (else -1, -1: leave ownership alone)."""
        if not self.st.is_root:
            return -1, -1
        pw = pwd.getpwnam("postgres")
        return pw.pw_uid, pw.pw_gid

    def prepare(self) -> None:
        self._bootstrapped = False
        self._ensure_root()
        self._make_sockdir()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self.write_hba()
        self._install_certs()

    def _make_sockdir(self) -> None:
        uid, gid = self._owner_ids()
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if uid >= 0:
            os.chown(self.sockdir, uid, gid)

    def write_hba(self) -> None:
        """pg_hba.conf: the superuser only via peer on the unix socket (replication too: a standby's
        pg_basebackup and WAL stream); every other role with a password over TCP."""
        uid, gid = self._owner_ids()
        su = self.superuser()
        # TLS and plaintext on the same port: a client certificate is optional (verified against the
        # stack's CA when one is presented: ssl_ca_file); the password is needed either way
        hba = ("# generated by devstack/stack: the superuser only via peer on the unix socket\n"
               f"local       all           {su}   peer\n"
               f"local       replication   {su}   peer\n"
               "local       all           all    scram-sha-256\n"
               f"host        all           {su}   127.0.0.1/32   reject\n"
               "hostssl     all           all    127.0.0.1/32   scram-sha-256\n"
               "hostnossl   all           all    127.0.0.1/32   scram-sha-256\n")
        (self.data / "pg_hba.conf").write_text(hba)
        if uid >= 0:
            os.chown(self.data / "pg_hba.conf", uid, gid)

    def _install_certs(self) -> None:
        # the server's key must belong to the server's OS user: its own 0600 copies, in its own directory
        uid, gid = self._owner_ids()
        files = ensure_certs(self.st)
        for src, name in ((files.server_cert, "server.crt"), (files.server_key, "server.key"), (files.ca, "ca.crt")):
            install_copy(src, self.tls / name, uid=uid, gid=gid)
        self.tls.chmod(0o700)
        if uid >= 0:
            os.chown(self.tls, uid, gid)

    def _initdb(self) -> None:
        if self.data.exists():
            shutil.rmtree(self.data)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as logf:
            logf.write(stamp_line(f"initdb {self.data}"))
            logf.flush()
            rc = subprocess.run([self.pg("initdb"), "-D", str(self.data), "-U", self.superuser(),
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

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv = [self.pg("postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sockdir}",
                "-c", "ssl=on", "-c", f"ssl_cert_file={self.tls / 'server.crt'}",
                "-c", f"ssl_key_file={self.tls / 'server.key'}", "-c", f"ssl_ca_file={self.tls / 'ca.crt'}",
                "-c", "ssl_min_protocol_version=TLSv1.2",
                # logical: the change slot of `kfm-maint sync` (KFM_POSTGIS__CHANGE_SLOT) decodes the WAL
                "-c", "wal_level=logical"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        return argv, env, self.root

    # ---- the superuser's psql over the unix socket: SQL and variables on stdin/env, never in argv
    def psql_super_argv(self) -> list[str]:
        return [self.pg("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir),
                "-p", str(self.port), "-U", self.superuser(), "-d", "postgres", "-f", "-"]

    def bootstrap_input(self) -> tuple[str, dict[str, str]]:
        """stdin and extra environment of the bootstrap psql: \\getenv lines, then bootstrap.sql."""
        c = self.st.cfg
        env = {"DEVSTACK_PG_DATABASE": c["DEVSTACK_PG_DATABASE"], "DEVSTACK_PG_OWNER": c["DEVSTACK_PG_OWNER"],
               "DEVSTACK_PG_OWNER_SCRAM": scram_sha256(c["DEVSTACK_PG_OWNER_PASSWORD"]),
               "DEVSTACK_PG_READER": c["DEVSTACK_PG_READER"],
               "DEVSTACK_PG_READER_SCRAM": scram_sha256(c["DEVSTACK_PG_READER_PASSWORD"])}
        prelude = "".join(f"\\getenv {var} {env_name}\n" for var, env_name in BOOTSTRAP_VARS)
        return prelude + (HERE / "postgis" / "bootstrap.sql").read_text(), env

    def psql_super(self, sql: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", ""), "PGCONNECT_TIMEOUT": "3", **(extra_env or {})}
        return subprocess.run(self.psql_super_argv(), input=sql, capture_output=True, text=True, timeout=60,
                              env=env, cwd="/", **self._as_pg())

    def start_probe(self) -> str:
        if not self._bootstrapped:
            res = self.psql_super("select 1;")
            if res.returncode != 0:
                raise ProbeError((res.stderr or res.stdout).strip().splitlines()[-1] if (res.stderr or res.stdout)
                                 else f"psql exit status {res.returncode}")
            sql, env = self.bootstrap_input()
            res = self.psql_super(sql, env)
            if res.returncode != 0:
                raise StackError(f"postgis: the bootstrap SQL (devstack/postgis/bootstrap.sql) failed: "
                                 f"{res.stderr.strip()}. Log file: {self.log}")
            self._bootstrapped = True
        return self.probe()

    def _psql_owner(self, sql: str, **tls: str) -> str:
        """``sql`` as the owner over TCP with its password: plaintext, or TLS with the ``PGSSL*`` variables given."""
        c = self.st.cfg
        env = {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": c["DEVSTACK_PG_OWNER_PASSWORD"],
               "PGCONNECT_TIMEOUT": "3", "PGSSLMODE": "disable", **tls}
        try:
            res = subprocess.run(
                [self.pg("psql"), "-X", "-At", "-h", "127.0.0.1", "-p", str(self.port), "-U", c["DEVSTACK_PG_OWNER"],
                 "-d", c["DEVSTACK_PG_DATABASE"], "-c", sql], capture_output=True, text=True, timeout=10, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ProbeError(f"psql: {e}") from None
        if res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().splitlines()
            raise ProbeError(("over TLS: " if tls else "") + (msg[-1] if msg else f"psql exit status {res.returncode}"))
        return res.stdout.strip()

    def probe(self) -> str:
        out = self._psql_owner("select current_setting('server_version'), postgis_lib_version(), "
                               "postgis_full_version()")
        server, postgis, _full = out.split("|", 2)
        files = TlsFiles(tls_dir(self.st))
        ssl = self._psql_owner("select ssl from pg_stat_ssl where pid = pg_backend_pid()", PGSSLMODE="verify-full",
                               PGSSLROOTCERT=str(files.ca), PGSSLCERT=str(files.client_cert),
                               PGSSLKEY=str(files.client_key))
        if ssl != "t":
            raise ProbeError("a verify-full connection is not encrypted (pg_stat_ssl)")
        return f"PostgreSQL {server.split()[0]} / PostGIS {postgis}"
