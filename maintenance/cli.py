"""``kfm-maint``: the thin command-line face of the kfm-ops actions.

Subcommands come from :data:`maintenance.actions.COMMANDS`; this module parses,
loads the settings, hands the action to the runner, and maps errors to exit codes.

Exit codes (also in README.md):
  0 ok · 1 checks or verification failed · 2 usage error (bad flag, argument or
  setting) · 3 refused by a safety gate · 4 service unreachable · 5 action failed
  (live state kept) · 70 internal error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from kfm_ops import __version__, log, transport
from kfm_ops.errors import ExitCode, KfmError, UsageError
from kfm_ops.paths import writable
from kfm_ops.redact import redact
from kfm_ops.settings import load_settings
from maintenance.actions import COMMANDS, GROUPS, Command
from maintenance.gates import Intent
from maintenance.output import Output

ENVIRONMENTS = ("dev", "staging", "production")


class _Parser(argparse.ArgumentParser):
    """Usage errors become :class:`UsageError`: one line, exit 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def _global_options() -> _Parser:
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
    g.add_argument("--metrics-file", default=argparse.SUPPRESS, metavar="PATH",
                   help="write the run's Prometheus metrics to PATH (node_exporter textfile, atomic); "
                        "KFM_METRICS__PUSHGATEWAY_URL pushes them too")
    g.add_argument("--junit-xml", default=argparse.SUPPRESS, metavar="PATH",
                   help="write the report as JUnit XML (checks: pytest's --junitxml; actions: their steps)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = _Parser(prog="kfm-maint", description="Operational checks and safe maintenance for the KFM backend.",
                     parents=[common], epilog="Exit codes: 0 ok, 1 checks failed, 2 usage, 3 refused, "
                     "4 service unreachable, 5 action failed, 70 internal error.")
    parser.add_argument("--version", action="version", version=f"kfm-maint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("check", parents=[common], help="run the opschecks (read-only); extra args go to pytest",
                       description="Run the opschecks with pytest (arguments after `--` go to pytest), then record "
                       "the run in the history (kfm_ops.check_runs) and write/push its metrics.")
    p.add_argument("--suite", default=None, metavar="NAME",
                   help="the run's suite: history and metrics job (default KFM_METRICS__JOB, kfm-opschecks)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest, e.g. -- -m smoke")
    p = sub.add_parser("smoke", parents=[common], help="run the smoke checks (= check --suite kfm-smoke -- -m smoke)")
    p.add_argument("--suite", default=None, metavar="NAME", help="the run's suite (default kfm-smoke)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="more arguments for pytest, after --")
    p = sub.add_parser("report", parents=[common], help="what changed in the check history (read-only)",
                       description="Compare the latest check run with the previous one (or the last one before "
                       "--since): new, persisting and recovered failures, flapping checks; the baseline; the "
                       "action ledger of the period.")
    p.add_argument("--since", default=None, metavar="TIME",
                   help="compare with the state at TIME: 2026-03-01, 2026-03-01T06:00Z, 36h, 7d")
    p.add_argument("--suite", default=None, metavar="NAME", help="which suite (default: the latest run's)")
    p.add_argument("--html", default=None, metavar="FILE", help="also write the report as one self-contained page")

    groups: dict[str, Any] = {}
    for command in COMMANDS:
        first, *rest = command.words
        label = f"{command.help} [risk: {command.risk}]"
        if not rest:
            command.arguments(sub.add_parser(first, parents=[common], help=label))
            continue
        if first not in groups:
            group = sub.add_parser(first, parents=[common], help=GROUPS.get(first, ""))
            groups[first] = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True,
                                                 parser_class=_Parser)
        command.arguments(groups[first].add_parser(rest[0], parents=[common], help=label))
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    defaults = {"json": False, "dry_run": False, "environment": None, "confirm": "", "env_file": None,
                "json_report_file": None, "verify": True, "metrics_file": None, "junit_xml": None}
    return {k: getattr(args, k, v) for k, v in defaults.items()}


def _command(args: argparse.Namespace) -> Command:
    words = (args.command, *([args.subcommand] if getattr(args, "subcommand", None) else []))
    return next(c for c in COMMANDS if c.words == words)


def main(argv: list[str] | None = None) -> int:
    out = Output(json_mode="--json" in (argv if argv is not None else sys.argv[1:]))
    try:
        args = build_parser().parse_args(argv)
        opts = _options(args)
        out.json_mode = opts["json"]
        if not args.command:
            raise UsageError("kfm-maint: a command is required", hint="see `kfm-maint --help`")
        if opts["json_report_file"] is not None:  # output paths first: a run that cannot report must not start
            writable(opts["json_report_file"], "--json-report-file")
        if opts["env_file"] is not None:  # given empty, it is a usage error (load_settings says so)
            os.environ["KFM_ENV_FILE"] = opts["env_file"]
        settings = load_settings(os.environ.get("KFM_ENV_FILE"))
        run_id = log.new_run_id()  # every kfm-maint run is its own run (the ledger key)
        log.configure(run_id=run_id, environment=settings.environment_label, component=f"kfm-maint {args.command}",
                      level=settings.log_level, log_file=settings.log_file)
        if args.command not in ("check", "smoke"):  # a check run's pytest logs them itself
            transport.log_waivers(settings)
        if args.command in ("check", "smoke"):
            from maintenance.checks import SMOKE_SUITE, run_checks

            smoke = args.command == "smoke"
            suite = args.suite or (SMOKE_SUITE if smoke else settings.metrics.job)
            extra = ["-m", "smoke"] if smoke else []
            return run_checks(extra + getattr(args, "pytest_args", []), opts, run_id, settings, suite=suite)
        if args.command == "report":
            from maintenance.report import run_report

            return run_report(args, opts, settings, run_id)
        from maintenance.runner import Invocation, run

        action = _command(args).build(args)  # bad arguments first (a password file that is a device, …)
        if settings.environment is None:
            raise UsageError("KFM_ENVIRONMENT is not set: an action must name the environment it acts on",
                             hint="set KFM_ENVIRONMENT to dev, staging or production (it must match the database's "
                             "own marker)")
        intent = Intent(action=action.name, dry_run=opts["dry_run"], environment=opts["environment"],
                        confirm=opts["confirm"])
        inv = Invocation(settings=settings, intent=intent, out=out, run_id=run_id, verify=opts["verify"],
                         report_file=Path(opts["json_report_file"]) if opts["json_report_file"] else None,
                         metrics_file=Path(opts["metrics_file"]) if opts["metrics_file"] else None,
                         junit_file=Path(opts["junit_xml"]) if opts["junit_xml"] else None)
        return run(action, inv)
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
