"""The canonical store: PostgreSQL + PostGIS through psycopg 3.

Read sessions are read-only at the server (``default_transaction_read_only``, a
statement timeout); write sessions (actions only) have no statement timeout but a lock
timeout. What "published" means is written once, in the harness's own schema: the view
``kfm_ops.published_items`` (migration 005); every check, action and bench reads it.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import struct
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, cast
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import pq
from psycopg import sql as pgsql
from psycopg.rows import RowFactory, dict_row, tuple_row

from kfm_ops import transport
from kfm_ops.buckets import BUCKET_SQL, H1_SQL, H2_SQL, Digests
from kfm_ops.digest import Digest
from kfm_ops.errors import UsageError
from kfm_ops.identity import Identity
from kfm_ops.partition import Partition
from kfm_ops.settings import PostgisSettings
from kfm_ops.stores.base import Store
from kfm_ops.tls_settings import dsn_sslmode

TLS_MODES = ("require", "verify-ca", "verify-full")
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
"""PostgreSQL's SSLRequest message: the server answers one byte, ``S`` (TLS follows) or ``N``."""


@dataclass(frozen=True)
class Mark:
    """Where a snapshot stands in the history of some canonical tables: the oldest transaction it could not see
    (its ``xmin``, a 64-bit xid) and how many rows each table held in it. :meth:`PostgisStore.unchanged_since`
    tells from a later snapshot whether any of them changed in between."""

    tables: tuple[str, ...]
    xmin: int
    rows: tuple[int, ...]


XID_SPAN = 2**32


class TlsNotOffered(ssl.SSLError):
    """The server answered ``N`` to the SSLRequest: it does not speak TLS (a TLS error, by its type)."""


PUBLISHED_ITEMS = "kfm_ops.published_items"
"""The view of published items (an item of a dataset whose status is 'published')."""
PUBLISHED_DATASETS = "kfm_ops.published_datasets"
"""The view of published datasets."""

# Tables of the harness's schemas the session's role may change (the check role should see none).
WRITABLE_SQL = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('kfm', 'kfm_ops', 'kfm_cache', 'kfm_auth') AND c.relkind IN ('r', 'm', 'p')
  AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
ORDER BY 1 LIMIT 3
"""
_BUCKET_COLUMNS = ", ".join(f"{expr} AS {name}".format(id="id", hash="content_hash")
                            for expr, name in ((BUCKET_SQL, "b"), (H1_SQL, "h1"), (H2_SQL, "h2")))
PUBLISHED_PAIRS_SQL = f'SELECT id, content_hash FROM {PUBLISHED_ITEMS} ORDER BY id COLLATE "C"'
Pair = tuple[str, str]


class PostgisStore(Store[PostgisSettings]):
    """One psycopg connection (autocommit) to the canonical store; driver errors leave as ServiceError."""

    service: ClassVar[str] = "postgis"
    label: ClassVar[str] = "postgis"

    def __init__(self, section: PostgisSettings, *, write: bool = False, application_name: str = "kfm-ops",
                 owner: bool = False, primary: PostgisStore | None = None) -> None:
        """``write``: the owner role (the write DSN), able to write; ``owner``: the owner role in a read-only
        session (what only the owner may read, e.g. the operators' password hashes, without writing);
        ``primary``: this store is the read replica (KFM_POSTGIS__REPLICA_DSN) and ``primary`` dates its
        snapshots (:mod:`kfm_ops.stores.replica`)."""
        super().__init__(section, write=write)
        if (write or owner) and not section.write_dsn:
            raise UsageError("postgis write access needs KFM_POSTGIS__WRITE_DSN",
                             hint="set the owner DSN for kfm-maint")
        self.primary = primary
        if primary is not None:
            self.dsn = section.replica_dsn or ""
            secret = section.replica_password or section.password
        else:
            self.dsn = (section.write_dsn if write or owner else section.dsn) or ""
            secret = section.write_password if write or owner else section.password
        timeout_ms = int(section.query_timeout * 1000)
        if write:
            # Actions run long statements on purpose (COPY, REFRESH … CONCURRENTLY, a million-row
            # INSERT … SELECT): no statement timeout, but never wait long for someone else's lock.
            options = f"-c statement_timeout=0 -c lock_timeout={timeout_ms}"
        else:
            options = f"-c statement_timeout={timeout_ms} -c default_transaction_read_only=on"
        self.sslmode = transport.postgis_sslmode(section, self.dsn)
        tls: dict[str, Any] = {}
        if section.ca_file:
            tls["sslrootcert"] = str(section.ca_file)
        if section.client_cert and section.client_key:
            tls.update(sslcert=str(section.client_cert), sslkey=str(section.client_key))
        if transport.customised(section) and not dsn_sslmode(self.dsn):
            tls["sslmode"] = "verify-full"  # TLS settings mean TLS, verified: never libpq's silent "prefer"
        with self.errors():
            self._reachable()
            self.conn: psycopg.Connection[Any] = psycopg.connect(
                self.dsn,
                **tls,
                password=secret.get_secret_value() if secret else None,
                connect_timeout=max(2, math.ceil(section.connect_timeout)),
                options=options,
                application_name=application_name,
                autocommit=True,
                # A peer that vanishes mid-statement is noticed by the kernel, not waited for forever.
                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                tcp_user_timeout=timeout_ms,
            )

    @property
    def address(self) -> str:
        parts = urlsplit(self.dsn)
        return f"{parts.hostname or '?'}:{parts.port}" if parts.port else (parts.hostname or "?")

    def _reachable(self) -> None:
        """A plain TCP connect first: libpq reports every failure as one error type, the socket by its own.

        When the sslmode asks for TLS, the TLS handshake too, as libpq will do it (PostgreSQL's SSLRequest,
        then the same CA, host name check and client certificate): a certificate the server presents that
        does not verify raises :class:`ssl.SSLCertVerificationError` here, a server without TLS
        :class:`TlsNotOffered` — faults told by their type, which libpq's one error type cannot.
        """
        parts = urlsplit(self.dsn)
        if not parts.hostname or parts.hostname.startswith("/"):
            return
        with socket.create_connection((parts.hostname, parts.port or 5432), timeout=self.section.connect_timeout) as s:
            if self.sslmode in TLS_MODES:
                self._handshake(s, parts.hostname)

    def _handshake(self, sock: socket.socket, host: str) -> None:
        sock.sendall(SSL_REQUEST)
        if sock.recv(1) != b"S":
            raise TlsNotOffered(f"the server does not offer TLS, and sslmode={self.sslmode} requires it")
        with self._preflight_context().wrap_socket(sock, server_hostname=host) as tls, \
                contextlib.suppress(OSError):
            tls.unwrap()  # a clean close_notify: the server ends the attempt without logging an error

    def _preflight_context(self) -> ssl.SSLContext:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.dsn).query).items()}
        section = self.section
        if self.sslmode == "require":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        else:
            root = str(section.ca_file or query.get("sslrootcert") or Path("~/.postgresql/root.crt").expanduser())
            context = ssl.create_default_context(cafile=root if root != "system" and Path(root).is_file() else None)
            context.check_hostname = self.sslmode == "verify-full"
        cert = section.client_cert or query.get("sslcert")
        key = section.client_key or query.get("sslkey")
        if cert and key:
            context.load_cert_chain(str(cert), str(key))
        return context

    # --- queries
    def execute(self, query: str, params: Any = None) -> psycopg.Cursor[Any]:
        """Run one statement; the cursor holds its rows already (client-side), so reading them cannot fail."""
        with self.errors():
            return self.conn.execute(query, params)

    def rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Every row of ``query``."""
        return self.execute(query, params).fetchall()

    def dicts(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """Every row of ``query`` as a dict."""
        with self.errors(), self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def one(self, query: str, params: Any = None) -> tuple[Any, ...]:
        """The first row of a query that always returns one (an aggregate, a setting)."""
        row = self.execute(query, params).fetchone()
        if row is None:
            raise AssertionError(f"query returned no row: {query[:80]}")  # a bug in the query, not the store
        return cast(tuple[Any, ...], row)

    def scalar(self, query: str, params: Any = None) -> Any:
        """The first column of the first row."""
        return self.one(query, params)[0]

    def stream(self, query: str, params: Any = None, *, batch: int = 10_000,
               row_factory: RowFactory[Any] | None = None) -> Iterator[Any]:
        """Rows of ``query`` through a server-side cursor, ``batch`` at a time: memory flat at any size."""
        name = f"kfm_stream_{uuid.uuid4().hex[:8]}"
        # Inside a snapshot the cursor lives in its transaction. A savepoint of our own there would be
        # unwound out of order when an error leaves this generator suspended while the snapshot ends.
        in_transaction = self.conn.info.transaction_status != pq.TransactionStatus.IDLE
        with self.errors(), contextlib.nullcontext() if in_transaction else self.conn.transaction(), \
                self.conn.cursor(name=name, row_factory=row_factory or tuple_row) as cur:
            cur.itersize = batch
            cur.execute(query, params)
            yield from cur

    def stream_dicts(self, query: str, params: Any = None, *, batch: int = 10_000) -> Iterator[dict[str, Any]]:
        """:meth:`stream` with each row a dict."""
        return cast(Iterator[dict[str, Any]], self.stream(query, params, batch=batch, row_factory=dict_row))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction around the block (committed on success, rolled back on error)."""
        with self.errors(), self.conn.transaction():
            yield

    def copy(self, statement: str, rows: Iterable[tuple[Any, ...]]) -> int:
        """``COPY … FROM STDIN`` of ``rows``; returns how many were written."""
        written = 0
        with self.errors(), self.conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
        return written

    def exists(self, relation: str) -> bool:
        """Whether ``schema.name`` (a table, view or materialized view) exists."""
        return bool(self.scalar("SELECT to_regclass(%s) IS NOT NULL", (relation,)))

    @property
    def backend_pid(self) -> int:
        return int(self.conn.info.backend_pid)

    # --- the store's own reading
    def published_pairs(self, *, batch: int = 10_000) -> Iterator[Pair]:
        """(id, content_hash) of the published items, in byte order of the ids, memory flat."""
        yield from self.stream(PUBLISHED_PAIRS_SQL, batch=batch)

    def published_digest(self, *, partition: Partition | None = None) -> Digest:
        """The :class:`~kfm_ops.digest.Digest` of the published items (of ``partition``): the pairs streamed
        in whatever order the server reads them (a digest is order-free; sorting a million ids is not)."""
        where = partition.where() if partition is not None else "true"
        return Digest.of(self.stream(f"SELECT id, content_hash FROM {PUBLISHED_ITEMS} WHERE {where}"))

    def bucket_digests(self, partition: Partition | None = None) -> Digests:
        """Per bucket of the published items (of ``partition``): (count, sum of h1, sum of h2), computed by
        PostgreSQL."""
        where = partition.where() if partition is not None else "true"
        rows = self.rows(f"SELECT b, count(*), sum(h1), sum(h2) FROM (SELECT {_BUCKET_COLUMNS} "
                         f"FROM {PUBLISHED_ITEMS} WHERE {where}) x GROUP BY b")
        return {int(b): (int(n), int(h1), int(h2)) for b, n, h1, h2 in rows}

    def pairs_in_buckets(self, buckets: list[int]) -> Iterator[Pair]:
        """(id, content_hash) of the published items in ``buckets``, in byte order of the ids."""
        yield from self.stream(f"SELECT id, content_hash FROM (SELECT id, content_hash, {_BUCKET_COLUMNS} "
                               f"FROM {PUBLISHED_ITEMS}) x WHERE b = ANY(%s) ORDER BY id COLLATE \"C\"", (buckets,))

    def pairs_of(self, ids: list[str]) -> list[Pair]:
        """(id, content_hash) of the published items among ``ids``, in byte order of the ids."""
        return [(r[0], r[1]) for r in self.rows(f"SELECT id, content_hash FROM {PUBLISHED_ITEMS} WHERE id = ANY(%s) "
                                                'ORDER BY id COLLATE "C"', (ids,))]

    def item_times(self, ids: list[str]) -> dict[str, tuple[datetime, str, datetime]]:
        """(item ``updated_at``, dataset id, dataset ``updated_at``) of each item of ``ids`` still in ``kfm.items``."""
        return {r[0]: (r[1], r[2], r[3]) for r in self.rows(
            "SELECT i.id, i.updated_at, d.id, d.updated_at FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id "
            "WHERE i.id = ANY(%s)", (ids,))}

    def change_times(self, ids: list[str]) -> dict[str, datetime]:
        """When each item of ``ids`` last changed as the contract dates it: the later of its own ``updated_at``
        and its dataset's (a dataset's ``updated_at`` moves when it is published, unpublished or retired, and
        when an item of it is deleted). Ids no longer in ``kfm.items`` are absent."""
        return dict(self.rows("SELECT i.id, greatest(i.updated_at, d.updated_at) FROM kfm.items i "
                              "JOIN kfm.datasets d ON d.id = i.dataset_id WHERE i.id = ANY(%s)", (ids,)))

    def dataset_times(self, dataset_ids: list[str]) -> dict[str, datetime]:
        """``updated_at`` of each dataset of ``dataset_ids`` (datasets are retired, never deleted)."""
        return dict(self.rows("SELECT id, updated_at FROM kfm.datasets WHERE id = ANY(%s)", (dataset_ids,)))

    @contextmanager
    def snapshot(self) -> Iterator[datetime]:
        """One consistent view of the canonical store for everything read through this store inside the block.

        A REPEATABLE READ, read-only transaction: every query and stream sees the data as of its
        start, whatever the pipelines commit meanwhile. Yields the instant the snapshot stands for:
        the transaction's start, so every change committed before it is in view (the watermark a
        run that read this snapshot may record). :meth:`export_snapshot` lends it to other sessions.
        On a replica the instant is dated before the snapshot opens, never later than what the replica
        had replayed (:func:`kfm_ops.stores.replica.dated`).
        """
        dated = None
        if self.primary is not None:
            from kfm_ops.stores.replica import instant

            dated = instant(self.primary, self)  # before the snapshot opens: it can only have replayed more
        with self.errors(), self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            now = self.conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
            yield dated or now

    def mark(self, tables: tuple[str, ...]) -> Mark:
        """Inside :meth:`snapshot`: where it stands for ``tables`` (a few index-only counts)."""
        found = self.one("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
                         + "".join(f", (SELECT count(*) FROM {table})" for table in tables))
        return Mark(tables, int(found[0]), tuple(int(n) for n in found[1:]))

    def unchanged_since(self, mark: Mark) -> bool:
        """Inside a later :meth:`snapshot`: whether none of ``mark.tables`` changed since ``mark``'s snapshot.

        Never a false yes. A row written after that snapshot was written by a transaction it could
        not see, whose xid is not older than its ``xmin``: so no row version this snapshot sees may
        carry such an xid (32-bit ``xmin`` values are placed by their distance below this snapshot's
        ``xmax``: exact for every row not yet frozen, and a frozen row can only look newer, never
        older), and every table must hold as many rows (a deletion alone leaves no row version). One
        scan of each table's ``xmin`` — a fraction of a digest's md5 of every row.
        """
        xmax = int(self.scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))
        span = xmax - mark.xmin  # how far back a row's xid may lie and still be one the marked snapshot missed
        if span >= XID_SPAN // 2:  # beyond what 32-bit xids tell apart: say changed
            return False
        newer = " + ".join(f"(SELECT count(*) FROM {table} WHERE "
                           f"((%(top)s - xmin::text::bigint) %% {XID_SPAN} + {XID_SPAN}) %% {XID_SPAN} <= %(span)s)"
                           for table in mark.tables)
        found = self.one(f"SELECT {newer}" + "".join(f", (SELECT count(*) FROM {table})" for table in mark.tables),
                         {"top": xmax % XID_SPAN, "span": span})
        return int(found[0]) == 0 and tuple(int(n) for n in found[1:]) == mark.rows

    def export_snapshot(self) -> str:
        """The id of this store's snapshot (inside :meth:`snapshot`), for other sessions to join."""
        return str(self.scalar("SELECT pg_export_snapshot()"))

    @contextmanager
    def joined(self, snapshot_id: str) -> Iterator[None]:
        """See exactly the snapshot another session exported (as ``pg_dump -j`` does)."""
        with self.errors(), self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self.conn.execute(pgsql.SQL("SET TRANSACTION SNAPSHOT {}").format(pgsql.Literal(snapshot_id)))
            yield

    def item_estimate(self) -> int:
        """About how many items the canonical store holds, without counting them: the larger of the planner's
        estimate (as of the last ANALYZE) and the live rows the statistics count (they follow every insert)."""
        return int(self.scalar(
            "SELECT greatest(c.reltuples, coalesce(s.n_live_tup, 0), 0)::bigint FROM pg_class c "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = 'kfm.items'::regclass"))

    def id_sample(self, wanted: int) -> list[str]:
        """About ``wanted`` ids of ``kfm.items``, from the same table pages every time (``TABLESAMPLE SYSTEM ...
        REPEATABLE``): a few random page reads, not a scan; what is drawn changes only as those pages change."""
        share = min(100.0, 100.0 * wanted / max(self.item_estimate(), 1))
        return [r[0] for r in self.rows("SELECT id FROM kfm.items TABLESAMPLE SYSTEM (%s) REPEATABLE (0)", (share,))]

    def ids_sort_bytewise(self) -> bool:
        """Whether ``kfm.items.id`` sorts in byte order under its own collation (libc C, POSIX or C.UTF-8): then a
        range of ids in byte order is a range of its primary key. False when unsure (``COLLATE "C"`` is right
        anyway, only slower)."""
        name, provider, collate = self.one(
            "SELECT c.collname, c.collprovider::text, c.collcollate FROM pg_attribute a "
            "JOIN pg_collation c ON c.oid = a.attcollation "
            "WHERE a.attrelid = 'kfm.items'::regclass AND a.attname = 'id'")
        if name == "default":  # the database's: its provider is recorded from PostgreSQL 15 (libc before)
            provider_column = "datlocprovider::text" if self.conn.info.server_version >= 150000 else "'c'"
            provider, collate = self.one(f"SELECT {provider_column}, datcollate FROM pg_database "
                                         "WHERE datname = current_database()")
        return provider == "c" and str(collate).lower() in {"c", "posix", "c.utf-8", "c.utf8"}

    def published_count(self) -> tuple[int, datetime | None]:
        """How many items are published, and the newest ``updated_at`` among them."""
        count, newest = self.one(f"SELECT count(*), max(updated_at) FROM {PUBLISHED_ITEMS}")
        return int(count), newest

    def identity(self) -> Identity | None:
        """The deployment identity this database is stamped with (``kfm_ops.environment``), if any."""
        if not self.exists("kfm_ops.environment"):
            return None
        row = self.execute("SELECT to_jsonb(e) FROM kfm_ops.environment e").fetchone()  # 006 may be pending
        return Identity.from_fields({**row[0], "environment": row[0].get("name")}) if row else None

    def environment_marker(self) -> str | None:
        """The environment this database says it is (``kfm_ops.environment``), if it carries a marker."""
        if not self.exists("kfm_ops.environment"):
            return None
        row = self.execute("SELECT name FROM kfm_ops.environment").fetchone()
        return row[0] if row else None

    def record_watermark(self, store: str, watermark: datetime | None, run_id: str) -> None:
        """Record how far ``store`` is synced (``kfm_ops.sync_watermarks``)."""
        if watermark is None:
            return
        self.execute(
            "INSERT INTO kfm_ops.sync_watermarks (store, watermark, run_id, synced_at) VALUES (%s, %s, %s, now()) "
            "ON CONFLICT (store) DO UPDATE SET watermark = excluded.watermark, run_id = excluded.run_id, "
            "synced_at = excluded.synced_at",
            (store, watermark, run_id),
        )

    def write_capable(self) -> str | None:
        """Why this session's role could write (a superuser, tables it may change), or None."""
        if self.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            return "the role is a superuser"
        tables = [r[0] for r in self.rows(WRITABLE_SQL)]
        return f"the role can write {', '.join(tables)}" if tables else None

    # --- Store
    def ping(self) -> None:
        self.execute("SELECT 1")

    def version(self) -> str:
        server, postgis = self.one(
            "SELECT current_setting('server_version'), "
            "(SELECT extversion FROM pg_extension WHERE extname = 'postgis')")
        return f"PostgreSQL {server}, PostGIS {postgis or 'absent'}"

    def close(self) -> None:
        self.conn.close()


def identifier(name: str) -> pgsql.Composable:
    """A quoted ``schema.name`` for SQL composed at run time."""
    return pgsql.Identifier(*name.split("."))
