"""Apply the kfm-ops schema migrations idempotently (owner connection only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kfm_ops import contracts
from kfm_ops.stores.postgis import PostgisStore

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS kfm_ops;
CREATE TABLE IF NOT EXISTS kfm_ops.schema_migrations (
    name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
"""


def pending(conn: PostgisStore, override: Path | None = None) -> list[Path]:
    """Migrations not yet recorded as applied (all of them on a fresh database)."""
    done: set[str] = set()
    if conn.exists("kfm_ops.schema_migrations"):
        done = {r[0] for r in conn.rows("SELECT name FROM kfm_ops.schema_migrations")}
    return [p for p in contracts.migrations(override) if p.name not in done]


def apply(conn: PostgisStore, override: Path | None = None) -> list[str]:
    """Apply every pending migration, each in its own transaction; return their names."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('kfm-ops:migrate'))")
        conn.execute(_BOOTSTRAP)
    for path in pending(conn, override):
        sql = path.read_text(encoding="utf-8")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('kfm-ops:migrate'))")
            conn.execute(sql)
            conn.execute(
                "INSERT INTO kfm_ops.schema_migrations (name, checksum) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                (path.name, hashlib.sha256(sql.encode()).hexdigest()),
            )
        applied.append(path.name)
    return applied
