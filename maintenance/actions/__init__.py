"""kfm-maint's actions: one table of commands, each naming the actions it runs.

An action has one name (the registry key below, the ledger's ``action``, the report's
node ids); a command is the words an operator types and the arguments they take. The
CLI (:mod:`maintenance.cli`) builds its subcommands from :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfm_ops.buckets import BUCKETS
from kfm_ops.errors import UsageError
from kfm_ops.partition import Partition
from kfm_ops.registry import resolve
from maintenance.action import Action

REGISTRY: dict[str, str] = {
    "migrate": "maintenance.actions.schema:Migrate",
    "sample-data-init": "maintenance.actions.sample_data:SampleDataInit",
    "reindex-search": "maintenance.actions.search:ReindexSearch",
    "reindex-rollback": "maintenance.actions.search:RollbackSearch",
    "sync-graph": "maintenance.actions.graph:SyncGraph",
    "cache-rebuild": "maintenance.actions.cache:CacheRebuild",
    "user-create": "maintenance.actions.users:UserCreate",
    "sync": "maintenance.actions.sync:Sync",
    "reindex-search-partition": "maintenance.actions.partitions:ReindexSearchPartition",
    "reindex-graph-partition": "maintenance.actions.partitions:ReindexGraphPartition",
    "sync-partition": "maintenance.actions.partitions:SyncPartition",
    "identity-stamp": "maintenance.actions.identity:IdentityStamp",
    "identity-environment": "maintenance.actions.identity:IdentityEnvironment",
}


def action_class(name: str) -> Any:
    """The action class registered as ``name``."""
    return resolve(REGISTRY, name, "action")


def targets(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated subset of ``allowed``, in ``allowed``'s order."""
    def parse(value: str) -> list[str]:
        chosen = [t.strip() for t in value.split(",") if t.strip()]
        unknown = [t for t in chosen if t not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown target {', '.join(map(repr, unknown)) or repr(value)}; choose from {','.join(allowed)}")
        return sorted(set(chosen), key=allowed.index)
    return parse


def partition(value: str) -> Partition:
    """An argparse type: ``i/N``, a partition of a partitioned run."""
    try:
        return Partition.parse(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message} ({exc.hint})") from None


def _partition_arguments(p: argparse.ArgumentParser, what: str) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--partitions", type=count(2, BUCKETS), default=1, metavar="N",
                       help=f"coordinate N partitions: export one snapshot and wait for the N workers ({what} "
                            "--partition i/N, i = 0..N-1), then finish the run")
    group.add_argument("--partition", type=partition, default=None, metavar="i/N",
                       help="be the worker of partition i (0-based, a Kubernetes completion index) of the "
                            "coordinator waiting for N partitions")
    p.add_argument("--partition-wait", type=count(1, 86_400), default=3600, metavar="SECONDS",
                   help="how long a coordinator waits for its partitions, a worker for its coordinator (3600)")


def count(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number in ``lo..hi``."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not lo <= number <= hi:
            raise argparse.ArgumentTypeError(f"{number} is out of range {lo}..{hi}")
        return number
    return parse


@dataclass(frozen=True)
class Command:
    """A kfm-maint subcommand: its words, help, risk tier, arguments, and the action it builds."""

    words: tuple[str, ...]
    help: str
    risk: str
    arguments: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace], Action[Any]]


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    pass


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--items", type=count(1, 5_000_000), default=2000, help="number of items (default 2000)")
    p.add_argument("--seed", type=count(0, 2**31 - 1), default=42, help="random seed (default 42)")
    p.add_argument("--force", action="store_true", help="load it again although the same catalog is there")


def _reindex_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Blue/green search reindex and graph sync, or `reindex rollback`."
    p.add_argument("mode", nargs="?", choices=("run", "rollback"), default="run",
                   help="`rollback` points the search alias back at the previous verified index")
    p.add_argument("--targets", type=targets(("search", "graph")), default=None,
                   help="comma-separated: search,graph (required for run)")
    p.add_argument("--keep", type=count(1, 50), default=2, help="search indices to keep, live one included")
    p.add_argument("--prune", action="store_true", help="graph: delete nodes that are not in the canonical store")
    p.add_argument("--force", action="store_true", help="search: rebuild even when the live index is current")
    p.add_argument("--batch-size", type=count(10, 50_000), default=None,
                   help="documents per bulk request (default 5000, at most 10 MiB) / "
                        "items per graph transaction (default 2000)")
    _partition_arguments(p, "kfm-maint reindex --targets search|graph")


def _partitioned(args: argparse.Namespace, command: str, allowed: tuple[str, ...]) -> bool:
    """Whether the run is partitioned; its targets must be ones a partition can do."""
    if args.partitions == 1 and args.partition is None:
        return False
    if not args.targets or set(args.targets) - set(allowed):
        raise UsageError(f"{command} --partition(s) works on --targets {','.join(allowed)} only, not "
                         f"{','.join(args.targets or []) or 'none'}",
                         hint=f"partition the targets {', '.join(allowed)}; run the others unpartitioned")
    return True


def _reindex(args: argparse.Namespace) -> Action[Any]:
    if args.mode == "rollback":
        return action_class("reindex-rollback")()  # type: ignore[no-any-return]
    if not args.targets:
        raise UsageError("reindex needs --targets", hint="e.g. --targets search,graph")
    from maintenance.actions.composite import Composite

    sized = {} if args.batch_size is None else {"batch_size": args.batch_size}  # else each action's default
    if _partitioned(args, "reindex", ("search", "graph")):
        if len(args.targets) > 1:
            raise UsageError("reindex --partition(s) works on one target per run, not "
                             f"{','.join(args.targets)}", hint="run the search and the graph reindex one after the "
                             "other, each with its own workers")
        if args.targets == ["graph"]:
            if args.partition is not None:
                return action_class("reindex-graph-partition")(  # type: ignore[no-any-return]
                    partition=args.partition, prune=args.prune, wait=args.partition_wait, **sized)
            return action_class("sync-graph")(  # type: ignore[no-any-return]
                prune=args.prune, partitions=args.partitions, partition_wait=args.partition_wait, **sized)
        if args.partition is not None:
            return action_class("reindex-search-partition")(  # type: ignore[no-any-return]
                partition=args.partition, wait=args.partition_wait, **sized)
        return action_class("reindex-search")(  # type: ignore[no-any-return]
            keep=args.keep, force=args.force, partitions=args.partitions, partition_wait=args.partition_wait, **sized)
    parts = {"search": lambda: action_class("reindex-search")(keep=args.keep, force=args.force, **sized),
             "graph": lambda: action_class("sync-graph")(prune=args.prune, **sized)}
    chosen = [parts[t]() for t in args.targets]
    return chosen[0] if len(chosen) == 1 else Composite("reindex", chosen)  # type: ignore[no-any-return]


def _sync_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Incremental sync: only what differs from one canonical snapshot is derived again and written; "
                     "deleted and unpublished items leave the stores.")
    p.add_argument("--targets", type=targets(("search", "graph", "cache")), required=True,
                   help="comma-separated: search,graph,cache")
    _partition_arguments(p, "kfm-maint sync --targets search,graph")


def _sync(args: argparse.Namespace) -> Action[Any]:
    if args.partition is not None and _partitioned(args, "sync", ("search", "graph")):
        return action_class("sync-partition")(  # type: ignore[no-any-return]
            targets=args.targets, partition=args.partition, wait=args.partition_wait)
    if args.partitions > 1:
        _partitioned(args, "sync", ("search", "graph", "cache"))  # the coordinator syncs the cache itself
        if not {"search", "graph"} & set(args.targets):
            raise UsageError("sync --partitions needs --targets search and/or graph",
                             hint="the cache is synced whole: drop --partitions")
    return action_class("sync")(  # type: ignore[no-any-return]
        targets=args.targets, partitions=args.partitions, partition_wait=args.partition_wait)


def _cache_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--targets", type=targets(("stats", "summaries")), default=["stats", "summaries"],
                   help="comma-separated: stats,summaries (default both)")


def _user_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--username", required=True)
    p.add_argument("--role", required=True, choices=("viewer", "operator", "maintainer", "admin"))
    p.add_argument("--rotate-password", action="store_true", help="replace the password of an existing account")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    src.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    src.add_argument("--password-file", metavar="PATH", help="read the password from this file")
    p.add_argument("--password-out", metavar="PATH",
                   help="where a generated password is written (new 0600 file; default in the current folder)")


def _stamp_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--targets", type=targets(("search", "graph", "cache")), required=True,
                   help="comma-separated: search,graph,cache")
    p.add_argument("--replace", action="store_true",
                   help="replace a stamp of another deployment (a store rebuilt for this one)")


def _environment_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, choices=("dev", "staging", "production"),
                   help="the environment the canonical database is to be stamped as")


COMMANDS: tuple[Command, ...] = (
    Command(("migrate",), "apply the kfm-ops schema migrations", "medium", _no_arguments,
            lambda _args: action_class("migrate")()),
    Command(("sample-data", "init"), "load the deterministic Kansas sample catalog (dev/staging)", "medium",
            _sample_arguments, lambda a: action_class("sample-data-init")(items=a.items, seed=a.seed, force=a.force)),
    Command(("reindex",), "rebuild derived stores from the canonical store", "high", _reindex_arguments, _reindex),
    Command(("sync",), "bring the live derived stores up to date with what changed", "medium", _sync_arguments,
            _sync),
    Command(("cache", "rebuild"), "rebuild stats views and Redis summaries", "medium", _cache_arguments,
            lambda a: action_class("cache-rebuild")(targets=a.targets)),
    Command(("user", "create"), "create or update an operator account", "medium", _user_arguments,
            lambda a: action_class("user-create")(
                username=a.username, role=a.role, rotate=a.rotate_password, password_env=a.password_env,
                password_stdin=a.password_stdin, password_file=a.password_file, password_out=a.password_out)),
    Command(("identity", "stamp"), "copy the canonical deployment stamp into derived stores", "medium",
            _stamp_arguments, lambda a: action_class("identity-stamp")(targets=a.targets, replace=a.replace)),
    Command(("identity", "environment"), "change the environment the canonical database is stamped as", "high",
            _environment_arguments,
            lambda a: action_class("identity-environment")(to=a.to, confirm=getattr(a, "confirm", ""))),
)
"""Every mutating command, in the order ``kfm-maint --help`` lists them."""

GROUPS = {"sample-data": "the dev/staging sample catalog", "cache": "the derived cache", "user": "operator accounts",
          "identity": "the deployment identity every store carries"}
"""Help of the first word of two-word commands."""
