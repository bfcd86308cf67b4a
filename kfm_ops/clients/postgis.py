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
    options = f"-c statement_timeout={int(section.query_timeout * 1000)}"
    if not write:
        options += " -c default_transaction_read_only=on"
    return psycopg.connect(
        dsn,
        password=secret.get_secret_value() if secret else None,
        connect_timeout=max(2, math.ceil(section.connect_timeout)),
        options=options,
        application_name=application_name,
        autocommit=True,
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
