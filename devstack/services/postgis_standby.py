"""A streaming standby of the local PostgreSQL (``up --postgis-standby``): pg_basebackup, its own port.

Taken afresh at every start (``pg_basebackup -X stream`` over the primary's unix socket, as the
superuser through peer authentication), so it never diverges from a primary that was reset. No
replication slot: a standby that is stopped must not make the primary keep WAL, and the primary's
replication check must not see a slot without a standby. ``hot_standby_feedback`` is on, so long
reads here (kfm-ops's replica reads) are not cancelled by the primary's vacuum (docs/local-stack.md).
"""

from __future__ import annotations

import shutil
import subprocess

from devstack.errors import ProbeError, StackError
from devstack.processes import stamp_line
from devstack.services.postgis import PostGIS

APPLICATION_NAME = "kfm-devstack-standby"  # how the primary's pg_stat_replication names this standby


class PostgisStandby(PostGIS):
    name = "postgis-standby"
    title = "PostgreSQL streaming standby"
    port_keys = ("DEVSTACK_POSTGIS_STANDBY_PORT",)
    optional = True
    fallback_suffix = "-standby"

    def primary(self) -> PostGIS:
        return PostGIS(self.st)

    def prepare(self) -> None:
        primary = self.primary()
        if not primary.procs():
            raise StackError("postgis-standby needs the primary running: devstack/stack up postgis --postgis-standby")
        primary.write_hba()  # a primary started by an older devstack may lack the replication line
        res = primary.psql_super("SELECT pg_reload_conf();")
        if res.returncode != 0:
            raise StackError(f"postgis-standby: could not reload the primary's pg_hba.conf: {res.stderr.strip()}")
        self._ensure_root()
        self._make_sockdir()
        self._basebackup(primary)
        self._install_certs()

    def _basebackup(self, primary: PostGIS) -> None:
        if self.data.exists():
            shutil.rmtree(self.data)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as logf:
            logf.write(stamp_line(f"pg_basebackup of 127.0.0.1:{primary.port} into {self.data}"))
            logf.flush()
            rc = subprocess.run([self.pg("pg_basebackup"), "-h", str(primary.sockdir), "-p", str(primary.port),
                                 "-U", self.superuser(), "-D", str(self.data), "-X", "stream", "-c", "fast",
                                 "--no-sync", "-R"],
                                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.root, timeout=600, **self._as_pg()).returncode
        if rc != 0:
            raise StackError(f"postgis-standby: pg_basebackup failed (exit status {rc}). Log file: {self.log}")
        conninfo = (f"host={primary.sockdir} port={primary.port} user={self.superuser()} "
                    f"application_name={APPLICATION_NAME}")
        with (self.data / "postgresql.auto.conf").open("a") as f:  # after -R's lines: these win
            f.write(f"# devstack: the standby's own settings\nprimary_conninfo = '{conninfo}'\n"
                    "hot_standby = on\nhot_standby_feedback = on\n")
        uid, gid = self._owner_ids()
        if uid >= 0:
            shutil.chown(self.data / "postgresql.auto.conf", uid, gid)

    def start_probe(self) -> str:
        return self.probe()  # the roles and schemas come from the primary, through the WAL

    def probe(self) -> str:
        if self._psql_owner("select pg_is_in_recovery()") != "t":
            raise ProbeError("the server answers but is not in recovery (not a standby)")
        version = super().probe()
        return f"{version}, standby of port {self.st.port('DEVSTACK_POSTGIS_PORT')}"
