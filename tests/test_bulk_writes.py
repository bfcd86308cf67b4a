"""kfm-ops' bulk writes never create an index: a write that outlives its index fails, naming it.

A killed run's bulk request can reach OpenSearch after the next run discarded the index it
was meant for (it was held up on the network). Sent to a plain index name, a cluster that
auto-creates indices (the devstack's does) makes a fresh index of that name, mapped by guess.
The loader writes through the index's writing alias with ``require_alias``, so such a request
fails there. The "late request" here is the loader's own next request after the index went.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kfm_ops.errors import ActionFailed
from kfm_ops.stores.search.bulk import BulkLoader, writing_alias

pytestmark = pytest.mark.devstack


@pytest.fixture
def throwaway(search_writer: Any) -> Iterator[str]:
    """A throw-away index, removed after the test with whatever a stray request made of it."""
    name = f"kfm-ops-tests-bulk-{uuid.uuid4().hex[:8]}"
    search_writer.indices.create(index=name, body={"settings": {"number_of_replicas": 0}})
    yield name
    search_writer.indices.delete(index=name, ignore_unavailable=True)
    # what a late write would make if it were sent to the plain alias name (no require_alias): one replica,
    # a yellow single-node cluster for every later test
    search_writer.indices.delete(index=writing_alias(name), ignore_unavailable=True)


def test_a_write_after_its_index_was_deleted_fails_and_creates_nothing(search_writer: Any, stack: Any,
                                                                      throwaway: str) -> None:
    loader = BulkLoader(stack.search(write=True).client, throwaway, action="tests-bulk")
    assert loader.load([("a", '{"n": 1}'), ("b", '{"n": 2}')]) == 2
    assert search_writer.indices.exists_alias(name=writing_alias(throwaway))
    search_writer.indices.delete(index=throwaway)  # the next run discarded it
    with pytest.raises(ActionFailed, match=f"search index {throwaway} is gone"):
        loader.load([("c", '{"n": 3}')])
    assert not search_writer.indices.exists(index=throwaway), "a late write created the index anew"


def test_a_delete_into_a_vanished_index_is_not_counted_as_done(search_writer: Any, stack: Any, throwaway: str) -> None:
    loader = BulkLoader(stack.search(write=True).client, throwaway, action="tests-bulk")
    assert loader.delete(["missing"]) == 1  # a document already gone is deleted: nothing to do
    search_writer.indices.delete(index=throwaway)
    with pytest.raises(ActionFailed, match="is gone"):
        loader.delete(["a"])


def test_a_loader_for_an_index_that_is_not_there_fails_naming_it(search_writer: Any, stack: Any) -> None:
    name = f"kfm-ops-tests-bulk-absent-{uuid.uuid4().hex[:8]}"
    loader = BulkLoader(stack.search(write=True).client, name, action="tests-bulk")
    with pytest.raises(ActionFailed, match=f"search index {name} is gone"):
        loader.load([("a", '{"n": 1}')])
    assert not search_writer.indices.exists(index=name)
    search_writer.indices.delete(index=writing_alias(name), ignore_unavailable=True)
