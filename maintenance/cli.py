"""``kfm-maint``: the thin command-line face of the kfm-ops actions.

Exit codes (also in README.md):
  0 ok · 1 checks or verification failed · 2 usage error (bad flag, argument or
  setting) · 3 refused by a safety gate · 4 service unreachable · 5 action failed
  (live state kept) · 70 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from kfm_ops import __version__, log
from kfm_ops.errors import ExitCode, KfmError, UsageError
from kfm_ops.gates import Intent
from kfm_ops.redact import redact
from kfm_ops.settings import load_settings
from maintenance.output import Output

ENVIRONMENTS = ("dev", "staging", "production")


class _Parser(argparse.ArgumentParser):
    """Usage errors become :class:`UsageError`: one line, exit 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def _targets(allowed: tuple[str, ...]) -> Any:
    def parse(value: str) -> list[str]:
        chosen = [t.strip() for t in value.split(",") if t.strip()]
        unknown = [t for t in chosen if t not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown target {', '.join(map(repr, unknown)) or repr(value)}; choose from {','.join(allowed)}")
        return sorted(set(chosen), key=allowed.index)
    return parse


def _count(lo: int, hi: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not lo <= number <= hi:
            raise argparse.ArgumentTypeError(f"{number} is out of range {lo}..{hi}")
        return number
    return parse


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    g = common.add_argument_group("global options (before or after the command)")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document on stdout")
    g.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS,
                   help="print the plan and write nothing anywhere")
    g.add_argument("--environment", choices=ENVIRONMENTS, default=argparse.SUPPRESS,
                   help="the environment you intend to act on (must match the settings and the database)")
    g.add_argument("--confirm", default=argparse.SUPPRESS, metavar="WORD",
                   help="PRODUCTION, required with --environment production")
    g.add_argument("--env-file", default=argparse.SUPPRESS, metavar="PATH", help="settings file (KFM_ENV_FILE)")
    g.add_argument("--json-report-file", default=argparse.SUPPRESS, metavar="PATH",
                   help="write a report in pytest-json-report's schema")
    g.add_argument("--no-verify", dest="verify", action="store_false", default=argparse.SUPPRESS,
                   help="skip the checks that run after an action (verification is on by default)")

    parser = _Parser(prog="kfm-maint", description="Operational checks and safe maintenance for the KFM backend.",
                     parents=[common], epilog="Exit codes: 0 ok, 1 checks failed, 2 usage, 3 refused, "
                     "4 service unreachable, 5 action failed, 70 internal error.")
    parser.add_argument("--version", action="version", version=f"kfm-maint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("check", parents=[common], help="run the opschecks (read-only); extra args go to pytest",
                       description="Run the opschecks with pytest. Arguments after `--` go to pytest.")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest, e.g. -- -m smoke")
    sub.add_parser("smoke", parents=[common], help="run the smoke checks (= check -- -m smoke)")
    sub.add_parser("migrate", parents=[common], help="apply the kfm-ops schema migrations [risk: medium]")

    sd = sub.add_parser("sample-data", parents=[common], help="the dev/staging sample catalog")
    sd_sub = sd.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True, parser_class=_Parser)
    init = sd_sub.add_parser("init", parents=[common], help="load the deterministic Kansas sample catalog [medium]")
    init.add_argument("--items", type=_count(1, 5_000_000), default=2000, help="number of items (default 2000)")
    init.add_argument("--seed", type=_count(0, 2**31 - 1), default=42, help="random seed (default 42)")

    ri = sub.add_parser("reindex", parents=[common], help="rebuild derived stores from the canonical store [high]",
                        description="Blue/green search reindex and graph sync, or `reindex rollback`.")
    ri.add_argument("mode", nargs="?", choices=("run", "rollback"), default="run",
                    help="`rollback` points the search alias back at the previous verified index")
    ri.add_argument("--targets", type=_targets(("search", "graph")), default=None,
                    help="comma-separated: search,graph (required for run)")
    ri.add_argument("--keep", type=_count(1, 50), default=2, help="search indices to keep, live one included")
    ri.add_argument("--prune", action="store_true", help="graph: delete nodes that are not in the canonical store")
    ri.add_argument("--force", action="store_true", help="search: rebuild even when the live index is current")
    ri.add_argument("--batch-size", type=_count(10, 50_000), default=None,
                    help="documents per bulk request (default 5000, at most 10 MiB) / "
                         "items per graph transaction (default 2000)")

    ca = sub.add_parser("cache", parents=[common], help="the derived cache")
    ca_sub = ca.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True, parser_class=_Parser)
    rb = ca_sub.add_parser("rebuild", parents=[common], help="rebuild stats views and Redis summaries [medium]")
    rb.add_argument("--targets", type=_targets(("stats", "summaries")), default=["stats", "summaries"],
                    help="comma-separated: stats,summaries (default both)")

    us = sub.add_parser("user", parents=[common], help="operator accounts")
    us_sub = us.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True, parser_class=_Parser)
    uc = us_sub.add_parser("create", parents=[common], help="create or update an operator account [medium]")
    uc.add_argument("--username", required=True)
    uc.add_argument("--role", required=True, choices=("viewer", "operator", "maintainer", "admin"))
    uc.add_argument("--rotate-password", action="store_true", help="replace the password of an existing account")
    src = uc.add_mutually_exclusive_group()
    src.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    src.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    src.add_argument("--password-file", metavar="PATH", help="read the password from this file")
    uc.add_argument("--password-out", metavar="PATH",
                    help="where a generated password is written (new 0600 file; default in the current folder)")
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    defaults = {"json": False, "dry_run": False, "environment": None, "confirm": "", "env_file": None,
                "json_report_file": None, "verify": True}
    return {k: getattr(args, k, v) for k, v in defaults.items()}


def _build_action(args: argparse.Namespace) -> Any:
    from maintenance.actions import action_class

    if args.command == "migrate":
        return action_class("migrate")()
    if args.command == "sample-data":
        return action_class("sample-data-init")(items=args.items, seed=args.seed)
    if args.command == "cache":
        return action_class("cache-rebuild")(targets=args.targets)
    if args.command == "user":
        return action_class("user-create")(
            username=args.username, role=args.role, rotate=args.rotate_password, password_env=args.password_env,
            password_stdin=args.password_stdin, password_file=args.password_file, password_out=args.password_out)
    if args.mode == "rollback":
        return action_class("reindex-rollback")()
    if not args.targets:
        raise UsageError("reindex needs --targets", hint="e.g. --targets search,graph")
    from maintenance.actions.composite import Composite

    sized = {} if args.batch_size is None else {"batch_size": args.batch_size}  # else each action's default
    parts = {"search": lambda: action_class("reindex-search")(keep=args.keep, force=args.force, **sized),
             "graph": lambda: action_class("sync-graph")(prune=args.prune, **sized)}
    chosen = [parts[t]() for t in args.targets]
    return chosen[0] if len(chosen) == 1 else Composite("reindex", chosen)


def run_checks(pytest_args: list[str], opts: dict[str, Any], run_id: str) -> int:
    """`kfm-maint check`: the opschecks in a pytest process, exit codes mapped to ours."""
    args = [a for a in pytest_args if a != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        # Always a report: it is how an unreachable service (exit 4) is told from a failed check (1).
        report = Path(opts["json_report_file"] or Path(tmp) / "report.json")
        cmd = [sys.executable, "-m", "pytest", "--pyargs", "opschecks", *args, "--json-report",
               f"--json-report-file={report}"]
        env = {**os.environ, "KFM_RUN_ID": run_id}
        if opts["env_file"]:
            env["KFM_ENV_FILE"] = opts["env_file"]
        proc = subprocess.run(cmd, env=env, check=False)
        unreachable = json.loads(report.read_text()).get("kfm", {}).get("unreachable") if report.is_file() else None
    mapping = {0: ExitCode.OK, 1: ExitCode.CHECKS_FAILED, 2: ExitCode.INTERNAL, 3: ExitCode.INTERNAL,
               4: ExitCode.USAGE, 5: ExitCode.USAGE}
    code = mapping.get(proc.returncode, ExitCode.INTERNAL)
    if proc.returncode == 5:
        print("kfm-maint: error: no checks were selected — check the -m / -k expression", file=sys.stderr)
    if code == ExitCode.CHECKS_FAILED and unreachable:
        code = ExitCode.UNREACHABLE
    return int(code)


def main(argv: list[str] | None = None) -> int:
    out = Output(json_mode="--json" in (argv if argv is not None else sys.argv[1:]))
    try:
        args = build_parser().parse_args(argv)
        opts = _options(args)
        out.json_mode = opts["json"]
        if not args.command:
            raise UsageError("kfm-maint: a command is required", hint="see `kfm-maint --help`")
        if opts["env_file"]:
            os.environ["KFM_ENV_FILE"] = opts["env_file"]
        settings = load_settings(opts["env_file"])
        run_id = log.new_run_id()  # every kfm-maint run is its own run (the ledger key)
        log.configure(run_id=run_id, environment=settings.environment, component=f"kfm-maint {args.command}",
                      level=settings.log_level, log_file=settings.log_file)
        if args.command in ("check", "smoke"):
            extra = ["-m", "smoke"] if args.command == "smoke" else []
            return run_checks(extra + getattr(args, "pytest_args", []), opts, run_id)
        from maintenance.runner import RunContext, run

        action = _build_action(args)
        intent = Intent(action=action.name, dry_run=opts["dry_run"], environment=opts["environment"],
                        confirm=opts["confirm"])
        ctx = RunContext(settings=settings, intent=intent, out=out, run_id=run_id, verify=opts["verify"],
                         report_file=Path(opts["json_report_file"]) if opts["json_report_file"] else None)
        return run(action, ctx)
    except KfmError as exc:
        out.error(exc)
        if out.json_mode:
            out.result({"command": " ".join(argv or sys.argv[1:2])}, exc.exit_code)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("kfm-maint: interrupted", file=sys.stderr)
        return int(ExitCode.ACTION_FAILED)
    except Exception as exc:  # noqa: BLE001 — the promise: never a traceback
        print(redact(f"kfm-maint: internal error: {type(exc).__name__}: {exc} "
                     "(set KFM_LOG_LEVEL=debug and see the log for details)"), file=sys.stderr)
        log.get_logger().error("internal_error", error=f"{type(exc).__name__}: {exc}",
                               exc_info=os.environ.get("KFM_LOG_LEVEL", "").lower() == "debug")
        return int(ExitCode.INTERNAL)


if __name__ == "__main__":
    raise SystemExit(main())
