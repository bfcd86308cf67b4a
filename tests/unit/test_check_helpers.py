"""The pure helpers checks and actions lean on: messages, versions, OpenSearch units, cache keys, index state."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin import assertions
from kfm_ops.pytest_plugin.assertions import expect, fail_with, format_ids, version_tuple
from kfm_ops.pytest_plugin.plugin import _kfm_writable, _proves, _risk
from kfm_ops.stores.cache import decode_summary, key_pattern, summary_key
from kfm_ops.stores.search.cluster import parse_byte_size, watermark_exceeded
from kfm_ops.stores.search.indices import SearchState, flatten_mapping


def test_format_ids_shows_the_first_n_and_the_total() -> None:
    assert format_ids(["a", "b"], 5) == "2: a, b"
    assert format_ids(["a", "b", "c"], 2) == "first 2 of 3: a, b"
    assert format_ids(["a"], 5, total=40) == "first 1 of 40: a"
    assert format_ids([], 5) == "none"


def test_fail_with_names_what_where_ids_and_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assertions, "FIRST_N", 2)
    with pytest.raises(pytest.fail.Exception) as failed:
        fail_with("3 stale", "opensearch h:9200 alias a", ["x", "y", "z"], "reindex")
    assert str(failed.value) == ("3 stale [where: opensearch h:9200 alias a] — offending ids (first 2 of 3: x, y) "
                                 "— hint: reindex")
    expect(True, "never", "nowhere")


def test_version_tuple() -> None:
    assert version_tuple("3.4.2dev") == (3, 4, 2)
    assert version_tuple("5.26") > version_tuple("5.3")
    with pytest.raises(ValueError, match="not a version"):
        version_tuple("latest")


def test_watermark_comparison() -> None:
    """The three watermark forms OpenSearch accepts compare the way its disk monitor does."""
    total, free = 100 * 2**30, 8 * 2**30  # 92 % used
    assert watermark_exceeded("90%", total, free)[0]
    assert not watermark_exceeded("95%", total, free)[0]
    assert watermark_exceeded("0.9", total, free)[0]
    assert watermark_exceeded("10gb", total, free)[0]
    assert not watermark_exceeded("5gb", total, free)[0]
    assert parse_byte_size("500mb") == 500 * 2**20 and parse_byte_size("123b") == 123


def test_flatten_mapping_includes_subfields() -> None:
    flat = flatten_mapping({"title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                            "geo": {"properties": {"lat": {"type": "float"}}}})
    assert flat == {"title": {"type": "text"}, "title.raw": {"type": "keyword"}, "geo": {"type": "object"},
                    "geo.lat": {"type": "float"}}


def test_cache_keys_substitute_only_the_dataset_id() -> None:
    assert summary_key("kfm:summary:dataset:{dataset_id}", "a") == "kfm:summary:dataset:a"
    assert summary_key("k:{dataset_id.__class__}", "a") == "k:{dataset_id.__class__}"  # no format-string access
    assert key_pattern("kfm:summary:dataset:{dataset_id}") == "kfm:summary:dataset:*"
    assert decode_summary("hash", {"a": "1"}) == {"a": "1"}
    assert decode_summary("string", '{"a": 1}') == {"a": 1}
    assert decode_summary("string", "not json") is None and decode_summary("list", []) is None


def test_search_state_versions_and_rollback_candidates() -> None:
    state = SearchState("kfm-items", "kfm-items-v", ["kfm-items-v0003"],
                        {"kfm-items-v0001": {"state": "verified"}, "kfm-items-v0002": {"state": "building"},
                         "kfm-items-v0003": {}, "kfm-items-vX": {}})
    assert state.next_index == "kfm-items-v0004"
    assert state.verified() == ["kfm-items-v0003", "kfm-items-v0001"]
    assert state.version("kfm-items-vX") == -1
    # a name in use that kfm-ops did not make (a stray, auto-created index) is skipped, never managed
    stray = SearchState(state.alias, state.prefix, state.live, state.metas,
                        frozenset([*state.metas, "kfm-items-v0007", "kfm-items-vbackup"]))
    assert stray.next_index == "kfm-items-v0008" and "kfm-items-v0007" not in stray.verified()


@pytest.mark.parametrize(("signature", "args"), [(_risk, ("extreme",)), (_proves, ("no-node-id",)),
                                                  (_kfm_writable, ("postgis", "mongo"))])
def test_marker_signatures_reject_bad_arguments(signature: object, args: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        signature(*args)  # type: ignore[operator]
    _risk("low")
    _proves("opschecks/x.py::test_y")
    _kfm_writable("postgis", "cache")


def test_the_public_api_resolves() -> None:
    import kfm_ops

    for name in kfm_ops.__all__:
        assert getattr(kfm_ops, name) is not None, name
    with pytest.raises(AttributeError):
        kfm_ops.no_such_name  # noqa: B018


def test_only_indices_kfm_ops_made_are_managed() -> None:
    from kfm_ops.stores.search.indices import ours

    mapping = {"mappings": {"_meta": {"kfm": {"state": "verified"}}}}
    found = {"kfm-items-v0001": mapping, "kfm-items-v0002": {"mappings": {}},  # no _meta.kfm: not ours
             "kfm-items-vbackup": mapping, "kfm-items-v00011": mapping, "kfm-items-v0003": mapping}
    assert sorted(ours("kfm-items-v", found)) == ["kfm-items-v0001", "kfm-items-v0003"]
