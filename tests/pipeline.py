"""A stand-in for the KFM pipelines: bounded writes to the canonical store while kfm-ops works.

``N`` writes per second for ``T`` seconds through the owner role on 127.0.0.1, mixing what
pipelines do — updates, inserts, deletions — and retiring one dataset once, dated as the
contract says (docs/contracts.md, "Dating changes"): an item's ``updated_at`` moves with it;
its dataset's moves when the dataset changes status and when an item of it is deleted.
Used by the tests of live production and by ``bench/``.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

MIX = (("update", 0.7), ("insert", 0.15), ("delete", 0.15))


@dataclass
class Written:
    updates: int = 0
    inserts: int = 0
    deletes: int = 0
    retired: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.updates + self.inserts + self.deletes + len(self.retired)


class Pipeline(threading.Thread):
    """Writes ``rate`` changes per second for ``seconds`` (or until :meth:`stop`); retires ``retire`` once,
    ``retire_after`` seconds in (or half-way through a shorter run)."""

    def __init__(self, dsn: str, password: str, *, rate: float, seconds: float, retire: str | None = None,
                 retire_after: float = 3.0, seed: int = 7) -> None:
        super().__init__(name="kfm-test-pipeline", daemon=True)
        self.dsn = dsn
        self.password = password
        self.rate = rate
        self.seconds = seconds
        self.retire = retire
        self.retire_after = min(retire_after, seconds / 2)
        self.rng = random.Random(seed)
        self.written = Written()
        self._halt = threading.Event()
        self._serial = 0

    def stop(self) -> Written:
        self._halt.set()
        self.join(60)
        return self.written

    def run(self) -> None:
        with psycopg.connect(self.dsn, password=self.password, autocommit=True,
                             application_name="kfm-test-pipeline") as conn:
            published = [r[0] for r in conn.execute("SELECT id FROM kfm.datasets WHERE status = 'published' "
                                                    "ORDER BY id")]
            started = time.monotonic()
            n = 0
            while not self._halt.is_set() and time.monotonic() - started < self.seconds:
                if self.retire and not self.written.retired and time.monotonic() - started >= self.retire_after:
                    self._retire(conn, self.retire)
                try:
                    self._one(conn, published)
                except psycopg.Error as exc:  # a row another write just removed: the load goes on
                    self.written.errors.append(str(exc)[:200])
                n += 1
                self._halt.wait(max(0.0, started + n / self.rate - time.monotonic()))

    def _one(self, conn: psycopg.Connection, datasets: list[str]) -> None:
        kind = self.rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        dataset = self.rng.choice([d for d in datasets if d != self.retire or not self.written.retired])
        if kind == "insert":
            self._serial += 1
            item = f"kfm-item-pipe-{self.rng.randrange(10**9):09d}-{self._serial}"
            content = hashlib.sha256(item.encode()).hexdigest()
            conn.execute("INSERT INTO kfm.items (id, dataset_id, title, body, geom, stac, sensitivity, content_hash, "
                         "updated_at) SELECT %s, %s, 'pipeline insert', '', geom, "
                         "jsonb_set(stac, '{id}', to_jsonb(%s::text)), sensitivity, %s, now() "
                         "FROM kfm.items WHERE dataset_id = %s LIMIT 1",
                         (item, dataset, item, content, dataset))
            conn.execute("INSERT INTO kfm.prov_links SELECT %s, 'wasGeneratedBy', 'kfm-act-' || %s "
                         "WHERE EXISTS (SELECT 1 FROM kfm.items WHERE id = %s)", (item, dataset, item))
            self.written.inserts += 1
            return
        row = conn.execute("SELECT id FROM kfm.items WHERE dataset_id = %s OFFSET %s LIMIT 1",
                           (dataset, self.rng.randrange(50))).fetchone()
        if row is None:
            return
        if kind == "update":
            stamp = f"{time.time():.6f}"
            conn.execute("UPDATE kfm.items SET title = title || ' ·', content_hash = encode(sha256(convert_to("
                         "content_hash || %s, 'UTF8')), 'hex'), updated_at = now() WHERE id = %s", (stamp, row[0]))
            self.written.updates += 1
        else:
            delete_item(conn, row[0], dataset)
            self.written.deletes += 1

    def _retire(self, conn: psycopg.Connection, dataset: str) -> None:
        retire_dataset(conn, dataset)
        self.written.retired.append(dataset)


def delete_item(conn: Any, item: str, dataset: str) -> None:
    """A pipeline's deletion of ``item`` of ``dataset`` (``conn``: a psycopg connection or a PostgisStore, in
    autocommit): its places and provenance links go with it, and it moves its dataset's ``updated_at`` (the
    contract's dating)."""
    with conn.transaction():
        conn.execute("DELETE FROM kfm.item_places WHERE item_id = %s", (item,))
        conn.execute("DELETE FROM kfm.prov_links WHERE subject = %s OR object = %s", (item, item))
        conn.execute("DELETE FROM kfm.items WHERE id = %s", (item,))
        conn.execute("UPDATE kfm.datasets SET updated_at = now() WHERE id = %s", (dataset,))


def retire_dataset(conn: Any, dataset: str) -> None:
    """A pipeline retiring ``dataset``: its items stay in the canonical store but are no longer published."""
    conn.execute("UPDATE kfm.datasets SET status = 'retired', updated_at = now() WHERE id = %s", (dataset,))
