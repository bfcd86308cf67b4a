"""PostGIS via psycopg 3. Read sessions are read-only at the server."""

from __future__ import annotations

import math

import psycopg

from kfm_ops.errors import UsageError
from kfm_ops.settings import PostgisSettings


def open(section: PostgisSettings, *, write: bool, application_name: str = "kfm-ops") -> psycopg.Connection:  # noqa: A001
    if write and not section.write_dsn:
        raise UsageError("postgis write access needs KFM_POSTGIS__WRITE_DSN", hint="set the owner DSN for kfm-maint")
    dsn = (section.write_dsn if write else section.dsn) or ""
    secret = section.write_password if write else section.password
    timeout_ms = int(section.query_timeout * 1000)
    if write:
        # Actions run long statements on purpose (COPY, REFRESH … CONCURRENTLY, a million-row
        # INSERT … SELECT): no statement timeout, but never wait long for someone else's lock.
        options = f"-c statement_timeout=0 -c lock_timeout={timeout_ms}"
    else:
        options = f"-c statement_timeout={timeout_ms} -c default_transaction_read_only=on"
    return psycopg.connect(
        dsn,
        password=secret.get_secret_value() if secret else None,
        connect_timeout=max(2, math.ceil(section.connect_timeout)),
        options=options,
        application_name=application_name,
        autocommit=True,
        # A peer that vanishes mid-statement is noticed by the kernel, not waited for forever.
        keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
        tcp_user_timeout=timeout_ms,
    )


def ping(conn: psycopg.Connection) -> None:
    conn.execute("SELECT 1").fetchone()


def version(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "SELECT current_setting('server_version'), "
        "(SELECT extversion FROM pg_extension WHERE extname = 'postgis')"
    ).fetchone()
    assert row is not None
    return f"PostgreSQL {row[0]}, PostGIS {row[1] or 'absent'}"


def close(conn: psycopg.Connection) -> None:
    conn.close()
