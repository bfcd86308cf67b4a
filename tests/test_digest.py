"""The order-free digest that fronts the search verify and the search consistency check.

Three computations must agree on the real stack (Python over the canonical stream,
the cluster's painless aggregation, the index-order read-back), and every kind of
damage a reindex can do must change the digest and then be named by the merge.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kfm_ops import contracts
from kfm_ops.consistency import search_matches
from kfm_ops.derive import search_documents
from kfm_ops.digest import Digest
from kfm_ops.errors import ServiceError
from kfm_ops.hub import ServiceHub
from kfm_ops.stores.search.reading import datasets_present, read_back_digest, search_digest

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]
SCRATCH = "kfm-digest-scratch"


@pytest.fixture
def scratch(search_writer: Any, owner_pg: Any) -> Iterator[str]:
    """A copy of the canonical documents in a throw-away index with the contract mapping."""
    contract = contracts.load("search")
    search_writer.indices.delete(index=SCRATCH, ignore_unavailable=True)
    search_writer.indices.create(index=SCRATCH, body={"settings": contracts.search_index_settings(contract, "dev"),
                                                      "mappings": contract["mappings"]})
    body = "".join(f'{{"index":{{"_id":"{item_id}"}}}}\n{doc}\n' for item_id, doc in search_documents(owner_pg, 0.1))
    assert not search_writer.bulk(index=SCRATCH, body=body, refresh=True)["errors"]
    yield SCRATCH
    search_writer.indices.delete(index=SCRATCH, ignore_unavailable=True)


def _first_ids(owner_pg: Any, n: int) -> list[str]:
    return [pair[0] for pair, _ in zip(owner_pg.published_pairs(), range(n), strict=False)]


def test_python_aggregation_and_read_back_agree(owner_pg: Any, search_writer: Any) -> None:
    canonical = Digest.of(owner_pg.published_pairs())
    assert canonical.count > 0
    assert search_digest(search_writer, "kfm-items") == canonical
    assert read_back_digest(search_writer, "kfm-items") == canonical
    assert read_back_digest(search_writer, "kfm-items", parts=3, batch=97) == canonical  # page edges, 3 readers


def test_datasets_present_names_exactly_the_datasets_with_documents(owner_pg: Any, search_writer: Any,
                                                                     scratch: str) -> None:
    datasets = sorted({r[0] for r in owner_pg.rows("SELECT DISTINCT dataset_id FROM kfm_ops.published_items")})
    assert len(datasets) >= 2
    assert datasets_present(search_writer, scratch, [*datasets, "no-such-dataset"]) == set(datasets)
    search_writer.delete_by_query(index=scratch, body={"query": {"term": {"dataset_id": datasets[0]}}}, refresh=True)
    assert datasets_present(search_writer, scratch, datasets) == set(datasets[1:])
    assert datasets_present(search_writer, scratch, []) == set()
    with pytest.raises(ServiceError, match="dataset lookups failed"):
        datasets_present(search_writer, f"{scratch}-missing", datasets[:1])


def test_multi_shard_index_is_read_in_id_order(owner_pg: Any, search_writer: Any, scratch: str) -> None:
    contract = contracts.load("search")
    two = f"{scratch}-2"
    search_writer.indices.delete(index=two, ignore_unavailable=True)
    settings = {**contracts.search_index_settings(contract, "dev"), "number_of_shards": 2}
    search_writer.indices.create(index=two, body={"settings": settings, "mappings": contract["mappings"]})
    try:
        search_writer.reindex(body={"source": {"index": scratch}, "dest": {"index": two}}, refresh=True)
        assert read_back_digest(search_writer, two) == Digest.of(owner_pg.published_pairs())
        assert search_digest(search_writer, two) == Digest.of(owner_pg.published_pairs())
    finally:
        search_writer.indices.delete(index=two, ignore_unavailable=True)


def _swap_hashes(client: Any, index: str, a: str, b: str) -> None:
    ha = client.get(index=index, id=a)["_source"]["content_hash"]
    hb = client.get(index=index, id=b)["_source"]["content_hash"]
    client.update(index=index, id=a, body={"doc": {"content_hash": hb}})
    client.update(index=index, id=b, body={"doc": {"content_hash": ha}})


@pytest.mark.parametrize("damage", ["missing", "orphaned", "stale", "swapped"])
def test_every_kind_of_damage_changes_the_digest_and_is_named(damage: str, owner_pg: Any, search_writer: Any,
                                                              stack: ServiceHub, scratch: str) -> None:
    a, b = _first_ids(owner_pg, 2)
    clean = search_matches(owner_pg, stack.search(write=True), scratch, store="scratch")
    assert clean.clean and clean.compared > 0
    if damage == "missing":
        search_writer.delete(index=scratch, id=a)
    elif damage == "orphaned":
        source = search_writer.get(index=scratch, id=a)["_source"]
        search_writer.index(index=scratch, id="kfm-item-orphan", body={**source, "id": "kfm-item-orphan"})
    elif damage == "stale":
        search_writer.update(index=scratch, id=a, body={"doc": {"content_hash": "0" * 64}})
    else:  # two documents carrying each other's hash: a count or a plain sum of hashes would not see it
        _swap_hashes(search_writer, scratch, a, b)
    search_writer.indices.refresh(index=scratch)

    canonical = Digest.of(owner_pg.published_pairs())
    assert search_digest(search_writer, scratch) != canonical
    assert read_back_digest(search_writer, scratch) != canonical
    diff = search_matches(owner_pg, stack.search(write=True), scratch, store="scratch")
    kind = "stale" if damage == "swapped" else damage
    named = {"missing": diff.missing_ids, "orphaned": diff.orphaned_ids, "stale": diff.stale_ids}[kind]
    assert not diff.clean
    assert (named == ["kfm-item-orphan"]) if damage == "orphaned" else (a in named)
    if damage == "swapped":
        assert sorted(diff.stale_ids) == sorted([a, b])
