"""kfm-ops local service stack, without Docker (stdlib only, Python 3.11).

    devstack/stack install                 install everything (idempotent)
    devstack/stack up [SERVICE...]         install what is missing, start, wait until ready
        [--opensearch-nodes 1|2]           a second OpenSearch node in the same cluster (default: one node)
        [--postgis-standby]                a streaming PostgreSQL standby (pg_basebackup, its own port)
    devstack/stack down [SERVICE...]       stop (TERM, then KILL after a bound); no process left
    devstack/stack status [--json]         one line per service; exit 1 if any is down
    devstack/stack logs SERVICE [-n N] [-f]
    devstack/stack reset                   down + delete the state dir (user caches are kept)
    devstack/stack env [--tls] [--postgis-standby]  the KFM_* harness settings as shell exports (--tls: over
                                           TLS; --postgis-standby: heavy reads from the standby)
    devstack/stack which BINARY            where the stack installed opa, toxiproxy, initdb, ...

Configuration: .env.example, then .env, then the process environment (later wins).
All state lives under .devstack/ (or $DEVSTACK_HOME): data, logs, pid files, jars,
built binaries, generated config and the LLM venv.  Re-installs are fast because the
standard user caches (~/.m2, Go's module and build caches, ~/.cache/pip) are kept.
"""

from __future__ import annotations

import argparse
import sys

from devstack.binaries import binary
from devstack.commands import cmd_down, cmd_env, cmd_install, cmd_logs, cmd_reset, cmd_status, cmd_up
from devstack.config import Stack, load_config
from devstack.errors import StackError
from devstack.sensitive import redact


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="devstack/stack", description=(__doc__ or "").split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="install everything (idempotent)")
    p = sub.add_parser("up", help="start services (all by default) and wait until ready")
    p.add_argument("services", nargs="*")
    p.add_argument("--opensearch-nodes", type=int, choices=(1, 2), default=None,
                   help="2: node 1 becomes cluster-capable and a second node joins it; 1: back to one node "
                   "(default: leave a running node as it is, start a stopped one as a single node)")
    p.add_argument("--postgis-standby", action="store_true",
                   help="also a streaming standby of PostgreSQL (pg_basebackup) on DEVSTACK_POSTGIS_STANDBY_PORT")
    p = sub.add_parser("down", help="stop services (all by default)")
    p.add_argument("services", nargs="*")
    p = sub.add_parser("status", help="one line per service; exit 1 if any is down")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("logs", help="show a service's log")
    p.add_argument("service")
    p.add_argument("-n", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true")
    sub.add_parser("reset", help="down, then delete the state dir")
    p = sub.add_parser("env", help="print the KFM_* harness settings as shell exports")
    p.add_argument("--tls", action="store_true",
                   help="the TLS variant: the stack's TLS endpoints, its CA and client certificate")
    p.add_argument("--postgis-standby", action="store_true",
                   help="add KFM_POSTGIS__REPLICA_DSN: heavy reads from the standby (`up --postgis-standby`)")
    p = sub.add_parser("which", help="print where the stack installed a binary (opa, toxiproxy, initdb, ...)")
    p.add_argument("binary")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg: dict[str, str] = {}
    try:
        cfg = load_config()
        st = Stack(cfg)
        if args.cmd == "install":
            return cmd_install(st)
        if args.cmd == "up":
            return cmd_up(st, args.services, opensearch_nodes=args.opensearch_nodes, standby=args.postgis_standby)
        if args.cmd == "down":
            return cmd_down(st, args.services)
        if args.cmd == "status":
            return cmd_status(st, args.json)
        if args.cmd == "logs":
            return cmd_logs(st, args.service, args.n, args.follow)
        if args.cmd == "reset":
            return cmd_reset(st)
        if args.cmd == "env":
            return cmd_env(st, args.tls, args.postgis_standby)
        if args.cmd == "which":
            print(binary(args.binary, st.cfg))
            return 0
    except StackError as e:
        msg = redact(str(e), cfg)
        print(msg if msg.startswith("devstack:") else f"devstack: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2
