"""A snapshot's mark and the exact "nothing changed since" test the reindex's rounds take before any digest
(kfm_ops.stores.postgis.PostgisStore.mark / unchanged_since): never a false yes, on the real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from kfm_ops.derive import DOCUMENT_TABLES
from kfm_ops.settings import Settings
from kfm_ops.stores.postgis import Mark, PostgisStore

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

SCRATCH = "kfm-item-unchanged-since-test"


@pytest.fixture
def reader(kfm_settings: Settings) -> Iterator[PostgisStore]:
    """A read-only session of its own (the reindex's reader role)."""
    store = PostgisStore(kfm_settings.postgis, application_name="kfm-ops test unchanged-since")
    yield store
    store.close()


@pytest.fixture
def scratch(owner_pg: PostgisStore) -> Iterator[Callable[[str], None]]:
    """run(sql): statements on one scratch item (made of the first item), which is removed afterwards."""

    def run(statement: str) -> None:
        owner_pg.execute(statement.replace("{id}", SCRATCH))

    owner_pg.execute("DELETE FROM kfm.items WHERE id = %s", (SCRATCH,))
    yield run
    owner_pg.execute("DELETE FROM kfm.items WHERE id = %s", (SCRATCH,))


INSERT = ("INSERT INTO kfm.items (id, dataset_id, title, body, geom, stac, sensitivity, content_hash, updated_at) "
          "SELECT '{id}', dataset_id, title, body, geom, stac, sensitivity, content_hash, updated_at "
          "FROM kfm.items ORDER BY id LIMIT 1")


def marked(reader: PostgisStore) -> Mark:
    with reader.snapshot():
        return reader.mark(DOCUMENT_TABLES)


def unchanged(reader: PostgisStore, since: Mark) -> bool:
    with reader.snapshot():
        return reader.unchanged_since(since)


def test_nothing_written_is_unchanged_and_every_kind_of_write_is_not(reader: PostgisStore,
                                                                     scratch: Callable[[str], None]) -> None:
    before = marked(reader)
    assert unchanged(reader, before)
    scratch(INSERT)
    assert not unchanged(reader, before)  # an insert
    inserted = marked(reader)
    assert unchanged(reader, inserted)
    scratch("UPDATE kfm.items SET title = title || ' ·' WHERE id = '{id}'")
    assert not unchanged(reader, inserted)  # an update
    updated = marked(reader)
    scratch("DELETE FROM kfm.items WHERE id = '{id}'")
    assert not unchanged(reader, updated)  # a deletion: no row version left, one row fewer
    scratch("UPDATE kfm.datasets SET title = title WHERE id = (SELECT min(id) FROM kfm.datasets)")
    assert not unchanged(reader, updated)  # a dataset row written (a status change would be one)


@pytest.mark.parametrize("savepoint", [False, True], ids=["transaction", "subtransaction"])
def test_a_write_in_flight_at_the_mark_counts_once_it_commits(reader: PostgisStore, scratch: Callable[[str], None],
                                                              pg_sessions: Any, savepoint: bool) -> None:
    """The hard case: a transaction that had its xid before the marked snapshot but committed after it (its rows
    carry an xid older than the next snapshot's, not yet seen by the marked one); also from a savepoint, whose
    subtransaction xid no snapshot lists."""
    scratch(INSERT)
    writer: psycopg.Connection[Any] = pg_sessions("unchanged-since")
    writer.autocommit = False
    if savepoint:
        writer.execute("SAVEPOINT inner_write")
    writer.execute("UPDATE kfm.items SET title = title || ' ·' WHERE id = %s", (SCRATCH,))
    before = marked(reader)  # the writer holds its xid, uncommitted
    assert unchanged(reader, before)  # not yet committed: nothing a snapshot can see
    writer.commit()
    assert not unchanged(reader, before)
