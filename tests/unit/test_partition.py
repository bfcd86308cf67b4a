"""Partitions i/N of the 4,096 buckets: every record in exactly one, digests that combine, clear bad input."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from kfm_ops import buckets
from kfm_ops.digest import Digest
from kfm_ops.errors import UsageError
from kfm_ops.partition import Partition
from tests.helpers import ROOT


@pytest.mark.parametrize("count", [1, 2, 3, 7, 64, 4095, 4096])
def test_the_partitions_cover_every_bucket_exactly_once(count: int) -> None:
    parts = [Partition(i, count) for i in range(count)]
    owners = [0] * buckets.BUCKETS
    for part in parts:
        for bucket in range(part.first, part.end):
            owners[bucket] += 1
    assert owners == [1] * buckets.BUCKETS
    assert [p.index for p in parts if p.holds(-1)] == [0]  # records without bucket fields: partition 0's
    for bucket in random.Random(count).sample(range(buckets.BUCKETS), 50):  # holds() says what the ranges say
        ranged = [p.index for p in parts if p.first <= bucket < p.end]
        assert [p.index for p in parts if p.holds(bucket)] == ranged and len(ranged) == 1
    sizes = [p.end - p.first for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_partition_digests_combine_into_the_whole() -> None:
    rng = random.Random(15)
    pairs = [(f"kfm-item-{rng.randrange(10**9):09d}", f"{rng.getrandbits(64):016x}") for _ in range(3000)]
    parts = [Partition(i, 3) for i in range(3)]
    mine = [[p for p in pairs if part.holds(buckets.fields(*p)[0])] for part in parts]
    assert sum(map(len, mine)) == len(pairs) and all(mine)
    assert Digest.combine(Digest.of(m) for m in mine) == Digest.of(pairs)
    whole = buckets.of(pairs)
    assert {b: v for part in parts for b, v in part.only(whole).items()} == whole


@pytest.mark.parametrize(("text", "says"), [("2/2", "need 0 <= i < N"), ("0/0", "need 0 <= i < N"),
                                            ("1/5000", "need 0 <= i < N <= 4096"), ("x", "not of the form i/N"),
                                            ("1-2", "not of the form i/N"), ("", "not of the form i/N")])
def test_a_bad_partition_is_named(text: str, says: str) -> None:
    with pytest.raises(UsageError) as refused:
        Partition.parse(text)
    assert says in refused.value.message and repr(text) in refused.value.message and refused.value.exit_code == 2


def test_the_sql_condition_is_the_bucket_range() -> None:
    assert Partition.whole().where() == "true"
    part = Partition.parse(" 1 / 4 ")
    assert (part.index, part.count, part.first, part.end, part.label) == (1, 4, 1024, 2048, "1/4")
    assert part.where("i.id").endswith("BETWEEN 1024 AND 2047") and "md5(i.id)" in part.where("i.id")


@pytest.mark.parametrize(("argv", "says"), [
    (["reindex", "--targets", "search", "--partition", "2/2"], "need 0 <= i < N"),
    (["reindex", "--targets", "search", "--partition", "0/2", "--partitions", "2"], "not allowed with"),
    (["sync", "--targets", "search", "--partitions", "1"], "out of range 2..4096"),
])
def test_bad_partition_arguments_are_usage_errors(argv: list[str], says: str) -> None:
    from maintenance.cli import build_parser

    with pytest.raises(UsageError, match=says):
        build_parser().parse_args(argv)


@pytest.mark.parametrize(("argv", "says"), [
    (["reindex", "--targets", "search,graph", "--partitions", "2"], "one target per run, not search,graph"),
    (["reindex", "--targets", "search,graph", "--partition", "0/2"], "one target per run, not search,graph"),
    (["sync", "--targets", "cache", "--partitions", "2"], "needs --targets search and/or graph"),
    (["sync", "--targets", "graph,cache", "--partition", "1/2"], "works on --targets search,graph only"),
])
def test_partitions_of_what_cannot_be_partitioned_are_refused(argv: list[str], says: str) -> None:
    from maintenance.actions import COMMANDS
    from maintenance.cli import build_parser

    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.words == (args.command,))
    with pytest.raises(UsageError, match=says) as refused:
        command.build(args)
    assert refused.value.exit_code == 2


def test_partition_arguments_build_coordinators_and_workers() -> None:
    from maintenance.actions import COMMANDS
    from maintenance.cli import build_parser

    def build(*argv: str) -> object:
        args = build_parser().parse_args(list(argv))
        return next(c for c in COMMANDS if c.words == (args.command,)).build(args)

    lead = build("reindex", "--targets", "search", "--partitions", "4", "--partition-wait", "60")
    assert (type(lead).__name__, lead.partitions, lead.partition_wait, lead.stores) == ("ReindexSearch", 4, 60,
                                                                                        ("search",))
    worker = build("reindex", "--targets", "search", "--partition", "3/4")
    assert type(worker).__name__ == "ReindexSearchPartition" and worker.stores == ("search#3/4",)
    sync = build("sync", "--targets", "search,graph", "--partition", "0/2")
    assert type(sync).__name__ == "SyncPartition" and sync.stores == ("search#0/2", "graph#0/2")


@pytest.mark.parametrize(("value", "says"), [("2/2", "need 0 <= i < N"), ("half", "not of the form i/N")])
def test_a_bad_check_partition_is_a_usage_error_naming_it(value: str, says: str) -> None:
    """pytest's usage-error exit (4), the value and the rule in one line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "opschecks/consistency", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "--kfm-partition", value], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output
    assert f"--kfm-partition {value!r}" in output and says in output, output
    assert "Traceback" not in output, output


def test_a_graph_reindex_partitions_into_a_coordinator_and_its_workers() -> None:
    from maintenance.actions import COMMANDS
    from maintenance.cli import build_parser

    command = next(c for c in COMMANDS if c.words == ("reindex",))
    coordinator = command.build(build_parser().parse_args(["reindex", "--targets", "graph", "--partitions", "3",
                                                            "--prune"]))
    worker = command.build(build_parser().parse_args(["reindex", "--targets", "graph", "--partition", "2/3",
                                                       "--prune"]))
    assert (coordinator.name, coordinator.partitions, coordinator.prune) == ("sync-graph", 3, True)
    assert (worker.name, worker.partition, worker.prune) == ("reindex-graph-partition", Partition(2, 3), True)
    assert worker.stores == ("graph#2/3",)  # one worker per partition at a time
