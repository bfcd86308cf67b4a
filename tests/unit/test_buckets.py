"""Bucket digests: every kind of difference lands in a differing bucket; equal sets have none."""

from __future__ import annotations

from kfm_ops import buckets


def pairs(n: int) -> list[tuple[str, str]]:
    return [(f"kfm-item-{k:07d}", f"{k:064x}") for k in range(n)]


def test_equal_sets_have_no_differing_bucket() -> None:
    assert buckets.differing(buckets.of(pairs(500)), buckets.of(reversed(pairs(500)))) == []
    assert buckets.total(buckets.of(pairs(500))) == 500


def test_each_difference_names_its_bucket() -> None:
    base = pairs(500)
    a, b = base[3], base[7]
    stale = [(a[0], "0" * 64) if p == a else p for p in base]
    swapped = [(a[0], b[1]) if p == a else (b[0], a[1]) if p == b else p for p in base]
    for changed, expected in ((base[:-1], {base[-1][0]}), ([*base, ("x", "y")], {"x"}), (stale, {a[0]}),
                              (swapped, {a[0], b[0]})):
        found = buckets.differing(buckets.of(base), buckets.of(changed))
        assert found == sorted({buckets.fields(i, "")[0] for i in expected}), (expected, found)


def test_bucket_fields_stay_in_range() -> None:
    bucket, h1, h2 = buckets.fields("ä-😀", "")
    assert 0 <= bucket < buckets.BUCKETS and 0 <= h1 < 2**28 and 0 <= h2 < 2**28
