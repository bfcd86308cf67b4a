"""Heavy reads from a streaming replica (KFM_POSTGIS__REPLICA_DSN), on devstack's real standby.

The consistency checks and the sync read the replica; what they conclude stays honest when it lags:
a check fails rather than compare with an old canonical state, and a sync's watermark is never later
than what the replica had replayed (docs/scale.md, "Reading from a replica").
"""

from __future__ import annotations

from typing import Any

import pytest

from kfm_ops.stores.postgis import PUBLISHED_ITEMS
from tests.helpers import kfm_maint, run_check
from tests.plugins.cluster import Standby, committing
from tests.plugins.faults import documents_deleted
from tests.proving import assert_fails, assert_passes

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

CON = "opschecks/consistency/test_cross_store.py::"
ALIAS = "kfm-items"


def _password(settings: Any) -> str:
    return str(settings.postgis.password.get_secret_value())


@pytest.mark.proves(CON + "test_search_matches_canonical")
def test_search_consistency_read_from_the_replica_names_missing_documents(standby: Standby, search_writer: Any,
                                                                          owner_pg: Any) -> None:
    """The comparison streams the replica; documents deleted from the index are named as before."""
    index = next(iter(search_writer.indices.get_alias(name=ALIAS)))
    ids = [r[0] for r in owner_pg.rows(f"SELECT id FROM {PUBLISHED_ITEMS} ORDER BY id LIMIT 2 OFFSET 20")]
    assert_passes(CON + "test_search_matches_canonical", env=standby.replica_env)
    with documents_deleted(search_writer, index, ids):
        assert_fails(CON + "test_search_matches_canonical", "2 missing", *ids, env=standby.replica_env)


@pytest.mark.proves(CON + "test_graph_matches_canonical")
@pytest.mark.proves(CON + "test_search_matches_canonical")
def test_a_replica_too_far_behind_fails_the_consistency_checks(standby: Standby, pg_sessions: Any) -> None:
    """Replay paused while the primary commits: the replica cannot catch up within REPLICA_MAX_WAIT, and the
    checks fail naming it and its lag instead of comparing the derived stores with an old canonical state."""
    env = {**standby.replica_env, "KFM_POSTGIS__REPLICA_MAX_WAIT": "1"}
    with committing(pg_sessions("replica-commits")):
        standby.pause()
        for check in ("test_search_matches_canonical", "test_graph_matches_canonical"):
            # the fixture the check reads through fails: an error outcome, like an unreachable store's
            assert_fails(CON + check, f"the postgis replica at 127.0.0.1:{standby.service.port} is",
                         "behind the primary", "it cannot serve this check's reads", env=env, unreachable=True)
        standby.resume()
    assert_passes(CON + "test_graph_matches_canonical", env=env)


def _touch(owner_pg: Any, item: str, suffix: str) -> Any:
    """A pipeline-style update of ``item`` (title, content hash, updated_at); returns its new updated_at."""
    return owner_pg.execute("UPDATE kfm.items SET title = title || %s, content_hash = encode(sha256(convert_to("
                            "content_hash || %s, 'UTF8')), 'hex'), updated_at = clock_timestamp() WHERE id = %s "
                            "RETURNING updated_at, content_hash", (suffix, suffix, item)).fetchone()


def test_a_sync_from_a_lagging_replica_records_what_it_replayed(standby: Standby, owner_pg: Any, search_writer: Any,
                                                                kfm_settings: Any) -> None:
    """Replay paused, then an item changes on the primary. A sync reading the replica cannot see the change: it
    records the replica's last replayed commit as its watermark (not the primary's clock), so the change stays
    pending, not lost. Replay resumed, the next sync brings it and moves the watermark past it. Search and graph
    are synced at once, the graph through a second session joined to the snapshot exported on the standby."""
    item = owner_pg.scalar(f"SELECT id FROM {PUBLISHED_ITEMS} ORDER BY id LIMIT 1 OFFSET 30")
    env = {**standby.replica_env, "KFM_POSTGIS__REPLICA_MAX_WAIT": "2"}
    assert kfm_maint("sync", "--targets", "search,graph", "--no-verify", env=env).returncode == 0
    standby.pause()
    try:
        changed_at, new_hash = _touch(owner_pg, item, " (replica proof)")
        proc = kfm_maint("sync", "--targets", "search,graph", "--no-verify", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "replica.behind" in proc.stderr
        watermarks = dict(owner_pg.rows("SELECT store, watermark FROM kfm_ops.sync_watermarks "
                                        "WHERE store IN ('search', 'graph')"))
        replayed = standby.replayed_at(_password(kfm_settings))
        assert watermarks == {"search": replayed, "graph": replayed} and replayed < changed_at, \
            (watermarks, replayed, changed_at)
        assert search_writer.get(index=ALIAS, id=item)["_source"]["content_hash"] != new_hash
        check = run_check(CON + "test_search_matches_canonical")  # from the primary: the change is pending
        assert check.outcome == "passed", check.message
    finally:
        standby.resume()
    proc = kfm_maint("sync", "--targets", "search,graph", "--no-verify", env=env)
    assert proc.returncode == 0 and "replica.behind" not in proc.stderr, proc.stdout + proc.stderr
    after = [w for (w,) in owner_pg.rows("SELECT watermark FROM kfm_ops.sync_watermarks "
                                         "WHERE store IN ('search', 'graph')")]
    assert len(after) == 2 and all(w > changed_at for w in after), (after, changed_at)
    assert search_writer.get(index=ALIAS, id=item)["_source"]["content_hash"] == new_hash


def test_a_rebuild_reads_the_replica(standby: Standby, owner_pg: Any) -> None:
    """A forced rebuild with the replica configured: its stream and its verify run on the standby (its sessions
    show there), and the result equals the primary's canonical set."""
    published = owner_pg.scalar(f"SELECT count(*) FROM {PUBLISHED_ITEMS}")
    returned = "SELECT tup_returned FROM pg_stat_database WHERE datname = 'kfm'"
    before = int(standby.scalar(returned))
    proc = kfm_maint("reindex", "--targets", "search", "--force", "--no-verify", env=standby.replica_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the load streams every published item and the verify reads them again: on the standby
    assert int(standby.scalar(returned)) - before >= 2 * published
    assert run_check(CON + "test_search_matches_canonical").outcome == "passed"
    assert run_check(CON + "test_search_matches_canonical", env=standby.replica_env).outcome == "passed"
