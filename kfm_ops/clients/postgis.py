"""PostGIS via psycopg 3. Read sessions are read-only at the server."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

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


def stream(conn: psycopg.Connection, sql: str, params: dict[str, Any] | None = None, *, batch: int = 10_000,
           row_factory: Any = None) -> Iterator[Any]:
    """Rows of ``sql`` through a server-side cursor, ``batch`` at a time: memory flat at any size."""
    name = f"kfm_stream_{uuid.uuid4().hex[:8]}"
    with conn.transaction(), conn.cursor(name=name, row_factory=row_factory or psycopg.rows.tuple_row) as cur:
        cur.itersize = batch
        cur.execute(sql, params)  # type: ignore[arg-type]
        yield from cur


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
