"""What changed in the canonical store, read from its WAL: one logical replication slot per derived store.

The bucket digests (:mod:`kfm_ops.buckets`) find every difference, but each run pays a scan
of the whole catalog to compute them. A logical slot (``wal_level = logical``, the built-in
``test_decoding`` plugin, read through SQL) hands over the rows the pipelines changed since
the slot was last advanced — hard deletions included, with their ids — so a sync costs what
changed. Nothing is added to the canonical schema: the slot lives in the server, its marker
in ``kfm_ops.change_slots``.

Rules that keep it exact:

- **A slot is trusted only after a baseline**: a digest sync that read a snapshot opened after
  the slot was created (``kfm_ops.change_slots.baselined_at``). A slot that is missing, lost
  (``wal_status = 'lost'``) or not baselined sends the run down the digest path, which creates
  it again first.
- **One snapshot decides**: the run opens its REPEATABLE READ snapshot, *then* reads the WAL
  position ``upto`` and peeks the changes committed before it. Every transaction visible in the
  snapshot is applied from the snapshot; the slot advances only past the leading run of visible
  ones (:meth:`Changes.advance_to`), so a transaction the snapshot did not see yet is read again
  next time. Re-reading is harmless: applying a change is idempotent.
- **Peek, then advance after the proof**: a run that dies leaves the slot where it was.

Costs: the server keeps the WAL a slot has not consumed (watch it:
``test_postgis_change_slots_retention``); decoding costs per changed row. A slot needs the
REPLICATION attribute on the actions' role (docs/security.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kfm_ops.stores.postgis import PUBLISHED_DATASETS, PostgisStore

PLUGIN = "test_decoding"
# Beyond this many items to look up one by one, the bucket digests (two aggregations, then the differing
# buckets) cost less: the run takes that path and still advances the slot.
MAX_IDS = 50_000
SLOT_NAME = re.compile(r"^[a-z0-9_]{1,50}$")  # what PostgreSQL allows in a slot name, with room for "_graph"

_ROW = re.compile(r"table (\w+)\.(\w+): (INSERT|UPDATE|DELETE|TRUNCATE):", re.ASCII)
_COLUMN = re.compile(r"(\w+)\[[^\]]*\]:('(?:[^']|'')*'|null|\S+)")

# Which column names an item, per canonical table; the tables whose rows the graph's reference
# nodes (datasets, activities, places, 'used' links) are made of.
_ITEM_COLUMN = {"items": "id", "item_places": "item_id", "prov_links": "subject"}
_REFERENCE_TABLES = {"datasets", "places", "prov_activities"}


def slot_name(prefix: str, store: str) -> str:
    """The slot of ``store`` (each derived store consumes the WAL at its own pace)."""
    return f"{prefix}_{store}"


@dataclass
class Changes:
    """The canonical changes a slot holds up to one WAL position, split by a snapshot's visibility."""

    items: set[str] = field(default_factory=set)  # ids of items whose row or links changed (deleted ones too)
    datasets: set[str] = field(default_factory=set)  # datasets changed: their items follow if published-ness did
    references: bool = False  # a reference node's source changed: datasets, activities, places, 'used' links
    truncated: bool = False  # a TRUNCATE: no ids to follow, only the digests can
    transactions: int = 0  # visible in the snapshot
    rows: int = 0
    invisible: int = 0  # committed after the snapshot opened: read again next run
    advance_to: str | None = None  # past the leading run of visible transactions

    def note(self, table: str, op: str, columns: dict[str, str]) -> None:
        self.rows += 1
        if op == "TRUNCATE":
            self.truncated = True
            return
        if table in _REFERENCE_TABLES:
            self.references = True
        if table == "datasets" and "id" in columns:
            self.datasets.add(columns["id"])
        elif table == "prov_links" and columns.get("relation") == "used":
            self.references = True
        elif (column := _ITEM_COLUMN.get(table)) and column in columns:
            self.items.add(columns[column])

    def follow(self, reader: PostgisStore, present: Callable[[list[str]], set[str]]) -> list[str] | None:
        """The item ids to compare, sorted: those named, and every item of a changed dataset whose items the
        store holds when it should not, or lacks when it should (``present``: which datasets the store has items
        of) — a dataset's row changes too when one of its items is deleted, which the items' own rows name.
        Read in the caller's snapshot. None when only the digests can tell (a TRUNCATE, or so many that comparing
        bucket digests costs less than looking up each id)."""
        if self.truncated:
            return None
        ids = set(self.items)
        if self.datasets:
            published = {r[0] for r in reader.rows(f"SELECT id FROM {PUBLISHED_DATASETS} WHERE id = ANY(%s)",
                                                    (sorted(self.datasets),))}
            held = present(sorted(self.datasets))
            flipped = sorted((published - held) | (held - published))
            if flipped:
                ids.update(r[0] for r in reader.rows("SELECT id FROM kfm.items WHERE dataset_id = ANY(%s)",
                                                     (flipped,)))
        return None if len(ids) > MAX_IDS else sorted(ids)

    def summary(self) -> str:
        return (f"{self.transactions} transactions, {self.rows} rows: {len(self.items)} items, "
                f"{len(self.datasets)} datasets" + (", a TRUNCATE" if self.truncated else "")
                + (f" ({self.invisible} committed after the snapshot: next run)" if self.invisible else ""))


def parse_row(data: str) -> list[tuple[str, str, str, dict[str, str]]]:
    """(schema, table, operation, the key columns) of one ``test_decoding`` line: none for BEGIN/COMMIT, two
    for an update that changed a key (``old-key: … new-tuple: …``: the old record goes, the new one comes)."""
    head = _ROW.match(data)
    if head is None:
        return []
    schema, table, op = head.groups()
    wanted = _KEYS.get(table, frozenset())
    tuples = data[head.end():].split(" new-tuple: ", 1) if " old-key: " in data[head.end():head.end() + 10] \
        else [data[head.end():]]
    return [(schema, table, op, _columns(part, wanted)) for part in tuples]


def _columns(text: str, wanted: frozenset[str]) -> dict[str, str]:
    """The ``wanted`` columns of one tuple (they lead it: the primary key comes first)."""
    columns: dict[str, str] = {}
    if not wanted:
        return columns
    for m in _COLUMN.finditer(text):
        name, value = m.groups()
        if name in wanted and name not in columns and value.startswith("'"):
            columns[name] = value[1:-1].replace("''", "'")
            if len(columns) == len(wanted):
                break
    return columns


_KEYS = {"items": frozenset({"id"}), "datasets": frozenset({"id"}), "item_places": frozenset({"item_id"}),
         "prov_links": frozenset({"subject", "relation"})}


@dataclass(frozen=True)
class Visibility:
    """Which transaction ids a snapshot sees (``pg_current_snapshot()``, ``xmin:xmax:xip,…``)."""

    xmin: int
    xmax: int
    running: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Visibility:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def sees(self, xid: int) -> bool:
        """``xid`` is a 32-bit id (as decoding gives it): widened to the 64-bit one nearest ``xmax`` (ids are
        compared modulo 2**32 within half the circle, as PostgreSQL does)."""
        ahead = (xid - self.xmax) % (1 << 32)
        full = self.xmax + ahead if ahead < (1 << 31) else self.xmax + ahead - (1 << 32)
        return full < self.xmin or (full < self.xmax and full not in self.running)


def collect(rows: Iterable[tuple[str, int, str]], visibility: Visibility, schema: str = "kfm") -> Changes:
    """The changes of ``rows`` (``lsn, xid, data`` from ``pg_logical_slot_peek_changes``, in commit order)
    that ``visibility`` sees; where the slot may advance to."""
    changes = Changes()
    pending: list[tuple[str, str, dict[str, str]]] = []
    leading = True
    for lsn, xid, data in rows:
        if data.startswith("BEGIN"):
            pending = []
            continue
        if data.startswith("COMMIT"):
            if visibility.sees(int(xid)):
                changes.transactions += 1
                for table, op, columns in pending:
                    changes.note(table, op, columns)
                if leading:
                    changes.advance_to = lsn
            else:
                changes.invisible += 1
                leading = False
            continue
        pending.extend(row[1:] for row in parse_row(data) if row[0] == schema)
    return changes


@dataclass
class SlotState:
    name: str
    exists: bool
    wal_status: str | None
    behind_bytes: int | None
    baselined: bool

    @property
    def trusted(self) -> bool:
        return self.exists and self.baselined and self.wal_status not in ("lost", None)

    def why_not(self) -> str:
        if not self.exists:
            return f"change slot {self.name} does not exist yet"
        if self.wal_status in ("lost", None):
            return f"change slot {self.name} lost its WAL (wal_status {self.wal_status})"
        return f"change slot {self.name} has no baseline yet"


def told(reader: PostgisStore, control: PostgisStore, slot: ChangeSlot) -> Changes:
    """Inside ``reader``'s open snapshot: what ``slot`` holds up to the WAL position read now (after the snapshot
    opened, so every transaction it sees committed before that position), split by what the snapshot sees."""
    visibility = Visibility.parse(str(reader.scalar("SELECT pg_current_snapshot()::text")))
    return slot.read(str(control.scalar("SELECT pg_current_wal_insert_lsn()::text")), visibility)


class ChangeSlot:
    """One derived store's slot, read and advanced through the actions' session (``control``)."""

    def __init__(self, control: PostgisStore, name: str) -> None:
        self.control = control
        self.name = name

    def state(self) -> SlotState:
        row = self.control.execute(
            "SELECT s.wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, "
            "EXISTS (SELECT 1 FROM kfm_ops.change_slots c WHERE c.slot = s.slot_name AND c.baselined_at IS NOT NULL) "
            "FROM pg_replication_slots s WHERE s.slot_name = %s AND s.slot_type = 'logical'", (self.name,)).fetchone()
        if row is None:
            return SlotState(self.name, False, None, None, False)
        return SlotState(self.name, True, row[0], row[1], bool(row[2]))

    def create(self, store: str) -> None:
        """A new slot (the old one dropped, if lost), not baselined yet: its position is now."""
        self.drop()
        self.control.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (self.name, PLUGIN))
        self.control.execute(
            "INSERT INTO kfm_ops.change_slots (slot, store, created_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (slot) DO UPDATE SET store = excluded.store, created_at = excluded.created_at, "
            "baselined_at = NULL, baseline_run = NULL", (self.name, store))

    def drop(self) -> None:
        self.control.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE slot_name = %s", (self.name,))

    def read(self, upto: str, visibility: Visibility) -> Changes:
        """The changes committed before ``upto`` (a WAL position read after the snapshot opened), streamed."""
        rows: Iterable[Any] = self.control.stream(
            "SELECT lsn::text, xid::text::bigint, data FROM pg_logical_slot_peek_changes(%s, %s::pg_lsn, NULL, "
            "'skip-empty-xacts', '1')", (self.name, upto), batch=2000)
        return collect(rows, visibility)

    def advance(self, lsn: str | None) -> None:
        if lsn is not None:
            self.control.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.name, lsn))

    def baselined(self, run_id: str) -> None:
        self.control.execute("UPDATE kfm_ops.change_slots SET baselined_at = now(), baseline_run = %s "
                             "WHERE slot = %s", (run_id, self.name))
