"""The sorted merge and the order-free digest, on pairs made here."""

from __future__ import annotations

import random

from kfm_ops.compare import compare
from kfm_ops.digest import MOD, PRIMES, Digest


def pairs(n: int, *, salt: str = "") -> list[tuple[str, str]]:
    return [(f"kfm-item-{k:07d}", f"hash-{k}{salt}") for k in range(n)]


def test_merge_names_missing_orphaned_and_stale_in_id_order() -> None:
    canonical = pairs(10)
    derived = [p for p in canonical if p[0] != "kfm-item-0000003"]  # missing
    derived[4] = (derived[4][0], "changed")  # stale
    derived.append(("kfm-item-9999999", "x"))  # orphaned
    diff = compare(iter(canonical), iter(derived), store="s", first_n=10)
    assert (diff.missing, diff.orphaned, diff.stale, diff.compared) == (1, 1, 1, 9)
    assert diff.missing_ids == ["kfm-item-0000003"]
    assert diff.stale_ids == [derived[4][0]]
    assert diff.orphaned_ids == ["kfm-item-9999999"]
    assert not diff.clean and diff.total == 3
    assert "1 missing (first: kfm-item-0000003)" in diff.summary()


def test_merge_keeps_only_the_first_n_ids_but_counts_all() -> None:
    orphans: list[str] = []
    diff = compare(iter([]), iter(pairs(50)), store="s", first_n=3, on_diff=lambda kind, i: orphans.append(i))
    assert diff.orphaned == 50 and diff.orphaned_ids == [p[0] for p in pairs(3)]
    assert len(orphans) == 50


def test_merge_of_equal_streams_is_clean() -> None:
    diff = compare(iter(pairs(100)), iter(pairs(100)), store="s")
    assert diff.clean and diff.compared == 100 and diff.summary() == "s: 100 items consistent"


def test_digest_is_order_free_and_combines() -> None:
    items = pairs(1000)
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    assert Digest.of(items) == Digest.of(shuffled)
    assert Digest.combine([Digest.of(items[:300]), Digest.of(items[300:])]) == Digest.of(items)
    assert Digest.of([]) == Digest(0, 0, 0)


def test_every_kind_of_difference_changes_the_digest() -> None:
    items = pairs(100)
    base = Digest.of(items)
    swapped = items[:]
    swapped[0], swapped[1] = (items[0][0], items[1][1]), (items[1][0], items[0][1])  # hashes traded between ids
    assert Digest.of(items[1:]) != base  # missing
    assert Digest.of([*items, ("kfm-item-x", "h")]) != base  # orphaned
    assert Digest.of([(items[0][0], "other"), *items[1:]]) != base  # stale
    assert Digest.of(swapped) != base  # swapped: a count or a plain sum of hashes would not see it


def test_digest_sums_stay_below_the_modulus_and_handle_non_ascii() -> None:
    digest = Digest.of([("ä-ß-😀", "h" * 64), ("id", "")])
    assert 0 <= digest.a < MOD and 0 <= digest.b < MOD and digest.count == 2


def test_digest_is_the_per_code_unit_arithmetic_the_cluster_runs() -> None:
    # the painless aggregation reduces one UTF-16 code unit at a time; Digest.of reduces each string once
    def residue(text: str, prime: int) -> int:
        units = text.encode("utf-16-be", "surrogatepass")
        value = 0
        for k in range(0, len(units), 2):
            value = (value * 65536 + int.from_bytes(units[k:k + 2], "big")) % prime
        return value

    found = [("ä-ß-😀", "h" * 64), ("id", ""), ("kfm-item-" + "9" * 40, "f" * 64), *pairs(50)]
    p1, p2 = PRIMES
    expected = Digest(len(found), sum(residue(i, p1) * residue(h, p1) for i, h in found) % MOD,
                      sum(residue(i, p2) * residue(h, p2) for i, h in found) % MOD)
    assert Digest.of(found) == expected
