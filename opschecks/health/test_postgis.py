"""PostGIS health: reachable, recent enough, and free of the usual operational distress.

The session-activity checks need the reader role to see other roles' sessions
(``GRANT pg_read_all_stats``, the narrowest grant; ``pg_monitor`` includes it); without it they fail
instead of passing blind.
"""

from __future__ import annotations

import time

import pytest

from kfm_ops import changes
from kfm_ops.pytest_plugin.assertions import expect, fail_with, version_tuple
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.settings import Settings
from kfm_ops.stores.postgis import PostgisStore


def _require_stats_visibility(postgis: PostgisStore) -> None:
    """Fail unless this role sees every session's state (else activity checks would pass blind)."""
    __tracebackhide__ = True
    user, visible = postgis.one("SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
                                "OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')")
    expect(visible, f"role {user} cannot see other sessions' state (no pg_read_all_stats)", postgis.where(),
           hint=f"GRANT pg_read_all_stats TO {user}")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_postgis_reachable(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """The canonical store answers a query within its configured timeout."""
    where = postgis.where()
    started = time.monotonic()
    answer = postgis.scalar("SELECT 1")
    elapsed = time.monotonic() - started
    expect(answer == 1, f"SELECT 1 returned {answer!r}", where)
    budget = postgis.section.connect_timeout
    expect(elapsed <= budget, f"SELECT 1 took {elapsed:.2f}s, over the {budget}s timeout", where,
           hint="check the database host load and network")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("postgis:min_server_version", "postgis:min_postgis_version")
def test_postgis_versions(postgis: PostgisStore, kfm_settings: Settings, kfm_contract: ContractLoader) -> None:
    """PostgreSQL and PostGIS versions are at least the contract's minimums."""
    where = postgis.where()
    contract = kfm_contract("postgis")
    server, postgis_version = postgis.one("SELECT current_setting('server_version_num')::int, "
                                          "(SELECT extversion FROM pg_extension WHERE extname = 'postgis')")
    minimum = int(contract["min_server_version"])
    expect(server >= minimum, f"PostgreSQL server_version_num {server} is below the contract minimum {minimum}",
           where, hint="upgrade PostgreSQL (postgis.json min_server_version)")
    expect(postgis_version is not None, "the postgis extension is not installed", where,
           hint="run `kfm-maint migrate` (CREATE EXTENSION postgis)")
    wanted = contract["min_postgis_version"]
    expect(version_tuple(postgis_version) >= version_tuple(wanted),
           f"PostGIS {postgis_version} is below the contract minimum {wanted}", where,
           hint="ALTER EXTENSION postgis UPDATE, or upgrade the PostGIS package")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_postgis_connection_saturation(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """Open connections (pg_stat_database.numbackends) stay below the max_connections ratio."""
    where = postgis.where()
    used, capacity = postgis.one("SELECT (SELECT sum(numbackends) FROM pg_stat_database)::int, "
                                 "current_setting('max_connections')::int")
    limit = kfm_settings.checks.max_connection_ratio
    ratio = used / capacity
    if ratio > limit:
        top = postgis.rows("SELECT coalesce(datname, '-') || '/' || coalesce(usename, '-') || '/' "
                           "|| coalesce(nullif(application_name, ''), '-') AS who, count(*) AS n "
                           "FROM pg_stat_activity GROUP BY who ORDER BY n DESC, who")
        fail_with(f"connection saturation {used}/{capacity} = {ratio:.0%} exceeds {limit:.0%}", where,
                  [f"{who} ×{n}" for who, n in top],
                  hint="find the client leaking connections (db/user/application above); add a pooler")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_postgis_no_long_running_queries(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """No active query has run longer than max_query_seconds."""
    where = postgis.where()
    _require_stats_visibility(postgis)
    limit = kfm_settings.checks.max_query_seconds
    rows = postgis.rows("SELECT pid, extract(epoch FROM now() - query_start)::int, usename, datname "
                        "FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                        "AND backend_type = 'client backend' AND now() - query_start > make_interval(secs => %s) "
                        "ORDER BY query_start", (limit,))
    expect(not rows, f"{len(rows)} queries running longer than {limit}s", where,
           [f"pid {pid} ({secs}s, {user}@{db})" for pid, secs, user, db in rows],
           hint="inspect with pg_stat_activity; cancel with pg_cancel_backend(pid)")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_postgis_no_idle_in_transaction(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """No session has been idle in transaction longer than max_idle_in_transaction_seconds."""
    where = postgis.where()
    _require_stats_visibility(postgis)
    limit = kfm_settings.checks.max_idle_in_transaction_seconds
    rows = postgis.rows("SELECT pid, extract(epoch FROM now() - state_change)::int, usename, "
                        "coalesce(nullif(application_name, ''), '-') FROM pg_stat_activity "
                        "WHERE state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid() "
                        "AND now() - state_change > make_interval(secs => %s) ORDER BY state_change", (limit,))
    expect(not rows, f"{len(rows)} sessions idle in transaction longer than {limit}s", where,
           [f"pid {pid} ({secs}s, {user}, {app})" for pid, secs, user, app in rows],
           hint="fix the client that leaves transactions open; end one with pg_terminate_backend(pid); "
           "consider idle_in_transaction_session_timeout")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_postgis_xid_wraparound(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """No database's oldest unfrozen transaction id is older than max_xid_age."""
    where = postgis.where()
    limit = kfm_settings.checks.max_xid_age
    rows = postgis.rows("SELECT datname, age(datfrozenxid) FROM pg_database WHERE age(datfrozenxid) > %s "
                        "ORDER BY 2 DESC", (limit,))
    expect(not rows, f"{len(rows)} databases have a transaction-id age above {limit}", where,
           [f"{db} (age {age})" for db, age in rows],
           hint="VACUUM (FREEZE) the named databases; check autovacuum is running and not blocked")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_postgis_no_blocked_locks(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """No session has waited on a lock held by another (pg_blocking_pids) for more than a few seconds."""
    where = postgis.where()
    _require_stats_visibility(postgis)
    rows = postgis.rows("SELECT pid, pg_blocking_pids(pid), "
                        "extract(epoch FROM now() - coalesce(state_change, query_start))::int, usename "
                        "FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() "
                        "AND cardinality(pg_blocking_pids(pid)) > 0 "
                        "AND now() - coalesce(state_change, query_start) > make_interval(secs => %s) ORDER BY 3 DESC",
                        (kfm_settings.checks.max_lock_wait_seconds,))
    limit = kfm_settings.checks.max_lock_wait_seconds
    expect(not rows, f"{len(rows)} sessions blocked on locks for more than {limit:g}s", where,
           [f"pid {pid} blocked by {list(blockers)} for {secs}s ({user})" for pid, blockers, secs, user in rows],
           hint="look at the blocking pids in pg_stat_activity; end the blocker with pg_terminate_backend(pid)")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_postgis_replication_lag(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """Every configured standby streams within max_replication_lag_seconds.

    A standby counts as configured when it has a physical replication slot, is
    named in synchronous_standby_names, or is connected (pg_stat_replication).
    With none configured the check passes by asserting exactly that: no slot,
    no synchronous standby name, no walsender. On a standby: it receives WAL, and
    its replay lag (none when it replayed all it received: a quiet primary is not lag).
    """
    where = postgis.where()
    limit = kfm_settings.checks.max_replication_lag_seconds
    in_recovery, sync_names = postgis.one("SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names')")
    if in_recovery:
        _require_stats_visibility(postgis)
        receiving, paused, lag = postgis.one(
            "SELECT (SELECT status FROM pg_stat_wal_receiver), pg_get_wal_replay_pause_state(), "
            "CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
            "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float END")
        expect(receiving == "streaming", f"this standby receives no WAL (wal receiver: {receiving or 'none'})",
               where, hint="check primary_conninfo, the network and the primary's pg_hba.conf (replication)")
        state = "" if paused == "not paused" else f"; replay is {paused} (pg_wal_replay_resume())"
        expect(lag is not None and lag <= limit,
               f"this standby's replay lag is {lag if lag is None else round(lag, 1)}s (limit {limit:g}s){state}",
               where, hint="check WAL replay on this standby: recovery conflicts, I/O, a paused replay")
        return
    _require_stats_visibility(postgis)
    slots = postgis.rows("SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY 1")
    senders = postgis.rows("SELECT coalesce(application_name, '') || '@' || coalesce(host(client_addr), 'local'), "
                           "state, extract(epoch FROM coalesce(replay_lag, '0'::interval)) "
                           "FROM pg_stat_replication ORDER BY 1")
    inactive = [name for name, active in slots if not active]
    expect(not inactive, f"{len(inactive)} physical replication slots have no standby attached", where, inactive,
           hint="start the standby, or drop the unused slot (it retains WAL)")
    if sync_names.strip():
        expect(senders, f"synchronous_standby_names is {sync_names!r} but no standby is connected", where,
               hint="start the standby; commits wait for it")
    lagging = [f"{who} ({state}, replay lag {lag:.1f}s)" for who, state, lag in senders
               if state != "streaming" or lag > limit]
    expect(not lagging, f"{len(lagging)} standbys are not streaming within {limit:g}s", where, lagging,
           hint="check the standby's network and disk; see pg_stat_replication")


@pytest.mark.smoke
@pytest.mark.risk("high")
def test_postgis_change_slots(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """No logical slot has lost its WAL or holds more than max_slot_behind_mb; the sync's change slots exist.

    A logical slot nobody consumes makes the server keep every WAL segment since its position
    until the disk fills. With KFM_POSTGIS__CHANGE_SLOT set, `kfm-maint sync` reads one slot per
    derived store (search, graph, as configured): each must exist (the first sync creates it).
    """
    where = postgis.where()
    limit = kfm_settings.checks.max_slot_behind_mb
    section = kfm_settings.postgis
    prefix = section.change_slot if section else None
    if postgis.scalar("SELECT pg_is_in_recovery()"):
        expect(not prefix, "this server is a standby: the change slots live on the primary", where,
               hint="point KFM_POSTGIS__DSN at the primary")
        return
    slots = postgis.rows("SELECT slot_name, coalesce(wal_status, 'lost'), "
                         "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float / 1048576 "
                         "FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY 1")
    lost = [name for name, status, _ in slots if status == "lost"]
    expect(not lost, f"{len(lost)} logical slots lost the WAL they had not consumed", where, lost,
           hint="the next kfm-maint sync creates a change slot again (and its baseline); drop any other")
    behind = [f"{name} ({mib:,.1f} MiB)" for name, status, mib in slots if status != "lost" and mib is not None
              and mib > limit]
    expect(not behind, f"{len(behind)} logical slots hold more than {limit:g} MiB of WAL", where, behind,
           hint="run kfm-maint sync (it consumes its slots), or drop a slot nobody reads")
    if prefix:
        stores = [s for s in ("search", "graph") if getattr(kfm_settings, s) is not None]
        missing = sorted({changes.slot_name(prefix, s) for s in stores} - {name for name, _, _ in slots})
        expect(not missing, f"{len(missing)} change slots of KFM_POSTGIS__CHANGE_SLOT={prefix} do not exist",
               where, missing, hint="run kfm-maint sync: it creates them (wal_level=logical, REPLICATION)")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_postgis_cache_hit_ratio(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """The kfm database's buffer cache hit ratio, over a short window, is at least min_cache_hit_ratio.

    Two samples of pg_stat_database KFM_CHECKS__HIT_RATIO_WINDOW_SECONDS apart: the counters since
    the last stats reset would carry one bulk load's misses for weeks. With fewer than
    KFM_CHECKS__MIN_HIT_RATIO_BLOCKS block accesses in the window the ratio is noise (a quiet
    database), and the check accepts it.
    """
    checks = kfm_settings.checks
    where = postgis.where()
    # autocommit: each sample is its own transaction, so its own statistics snapshot
    sample = "SELECT datname, blks_hit, blks_read, stats_reset FROM pg_stat_database WHERE datname = current_database()"
    db, hit0, read0, reset0 = postgis.one(sample)
    time.sleep(checks.hit_ratio_window_seconds)
    _, hit1, read1, reset1 = postgis.one(sample)
    hit, read = hit1 - hit0, read1 - read0
    if reset1 != reset0 or hit + read < checks.min_hit_ratio_blocks:
        return  # counters reset in the window, or too few block accesses to judge (see docstring)
    ratio = hit / (hit + read)
    window = f"{checks.hit_ratio_window_seconds:g}s"
    expect(ratio >= checks.min_cache_hit_ratio,
           f"cache hit ratio of database {db} over {window} is {ratio:.3f}, below {checks.min_cache_hit_ratio}",
           f"{where} db {db}", [f"{db} (hit {hit}, read {read} in {window})"],
           hint="raise shared_buffers, or look for sequential scans missing an index (pg_stat_user_tables)")
