"""Injecting faults into the shared local stack, and putting everything back.

:func:`injected` is the one shape of a proof's fault: do it, run the check, undo it —
whatever happened in between. The fixtures here restore what they changed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from kfm_ops import contracts
from kfm_ops.settings import Settings
from kfm_ops.stores.postgis import PostgisStore
from tests.proving import PROOF

T = TypeVar("T")


@contextmanager
def injected(do: Callable[[], T], undo: Callable[[], object]) -> Iterator[T]:
    """Inject a fault with ``do()`` (its result is yielded), and always restore with ``undo()``."""
    result = do()
    try:
        yield result
    finally:
        undo()


@contextmanager
def documents_deleted(client: Any, index: str, ids: list[str]) -> Iterator[None]:
    """The search documents ``ids`` deleted from ``index`` (refreshed), put back as they were afterwards."""
    docs = {i: client.get(index=index, id=i)["_source"] for i in ids}

    def delete() -> None:
        for i in ids:
            client.delete(index=index, id=i)
        client.indices.refresh(index=index)

    def restore() -> None:
        for i, doc in docs.items():
            client.index(index=index, id=i, body=doc)
        client.indices.refresh(index=index)

    with injected(delete, restore):
        yield


def pg_connect(settings: Settings, application_name: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """An extra owner connection (for sessions that must hold a state: a lock, an open transaction)."""
    section = settings.postgis
    assert section is not None and section.write_dsn and section.write_password
    return psycopg.connect(section.write_dsn, password=section.write_password.get_secret_value(),
                           application_name=application_name, autocommit=autocommit, connect_timeout=20)


class Holder:
    """A session kept busy in a background thread (a long query, a lock wait)."""

    def __init__(self, conn: psycopg.Connection[Any], sql: str) -> None:
        self.conn = conn
        self.pid = conn.info.backend_pid
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(sql,), daemon=True)
        self.thread.start()

    def _run(self, sql: str) -> None:
        try:
            self.conn.execute(sql)  # type: ignore[arg-type]
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def pg_sessions(kfm_settings: Settings, owner_pg: PostgisStore) -> Iterator[Callable[[str], psycopg.Connection[Any]]]:
    """open(app_name): extra owner sessions, cancelled and closed at teardown."""
    opened: list[psycopg.Connection[Any]] = []

    def open_session(name: str) -> psycopg.Connection[Any]:
        conn = pg_connect(kfm_settings, f"{PROOF}-{name}")
        opened.append(conn)
        return conn

    yield open_session
    for conn in opened:
        with contextlib.suppress(Exception):
            owner_pg.execute("SELECT pg_cancel_backend(%s)", (conn.info.backend_pid,))
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()


@pytest.fixture
def redis_snapshot(kfm_settings: Settings) -> Iterator[Callable[[str], None]]:
    """snapshot(key): DUMP the key now (with its TTL) and RESTORE it exactly at teardown."""
    import redis

    section = kfm_settings.cache
    assert section is not None and section.write_password
    binary = redis.Redis.from_url(section.url, username=section.write_username,
                                  password=section.write_password.get_secret_value(), decode_responses=False)
    saved: dict[str, tuple[Any, int]] = {}

    def snapshot(key: str) -> None:
        saved[key] = (binary.dump(key), int(binary.pttl(key)))  # type: ignore[arg-type]

    yield snapshot
    try:
        for key, (payload, pttl) in saved.items():
            binary.delete(key)
            if payload is not None:
                binary.restore(key, max(pttl, 0), payload, replace=True)
    finally:
        binary.close()


@pytest.fixture
def contracts_copy(tmp_path: Path) -> Callable[[str, Callable[[dict[str, Any]], None]], dict[str, str]]:
    """edit(name, change): a copy of the contracts dir with one contract changed; returns the env to use it."""

    def edit(name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, str]:
        target = tmp_path / "contracts"
        if not target.exists():
            shutil.copytree(contracts.BUILTIN, target)
        data = json.loads((target / f"{name}.json").read_text())
        change(data)
        (target / f"{name}.json").write_text(json.dumps(data))
        return {"KFM_CONTRACTS_DIR": str(target)}

    return edit


@pytest.fixture
def toxiproxy() -> Iterator[Callable[[str, str, int], str]]:
    """proxy(name, upstream_host_port, latency_ms): a Toxiproxy proxy with latency; returns its listen address."""
    from tests.toxiproxy import Proxy

    made: list[Proxy] = []

    def proxy(name: str, upstream: str, latency_ms: int) -> str:
        made.append(p := Proxy(f"{PROOF}-{name}", upstream))  # replaces one a killed run left
        p.toxic("latency", latency=latency_ms, jitter=0)
        return f"127.0.0.1:{p.port}"

    yield proxy
    for p in made:
        with contextlib.suppress(Exception):
            p.close()
