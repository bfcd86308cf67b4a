"""Reading test_decoding lines and deciding what a snapshot saw (kfm_ops.changes), without a server: the lines
are the plugin's format as the local stack's PostgreSQL 15 writes it (tests/test_change_slots.py runs it)."""

from __future__ import annotations

from kfm_ops.changes import Visibility, collect, parse_row

ITEM_UPDATE = ("table kfm.items: UPDATE: id[text]:'kfm-item-1' dataset_id[text]:'ds-a' title[text]:'it''s here' "
               "body[text]:'x' geom[geometry]:'0101000020E6' stac[jsonb]:'{\"id\": \"other\"}'")


def test_a_row_names_its_table_operation_and_key() -> None:
    assert parse_row(ITEM_UPDATE) == [("kfm", "items", "UPDATE", {"id": "kfm-item-1"})]
    assert parse_row("table kfm.items: DELETE: id[text]:'it''s'") == [("kfm", "items", "DELETE", {"id": "it's"})]
    assert parse_row("table kfm.prov_links: INSERT: subject[text]:'a1' relation[text]:'used' object[text]:'d'") == [
        ("kfm", "prov_links", "INSERT", {"subject": "a1", "relation": "used"})]
    assert parse_row("table kfm.places: INSERT: id[text]:'p' name[text]:'n'") == [("kfm", "places", "INSERT", {})]
    assert parse_row("BEGIN 12") == [] and parse_row("COMMIT 12") == []


def test_a_changed_key_names_both_records() -> None:
    rows = parse_row("table kfm.items: UPDATE: old-key: id[text]:'old' new-tuple: id[text]:'new' title[text]:'t'")
    assert [r[3] for r in rows] == [{"id": "old"}, {"id": "new"}]


def test_visibility_follows_the_snapshot() -> None:
    seen = Visibility.parse("100:105:102,104")
    assert seen.sees(99) and seen.sees(101) and seen.sees(103)
    assert not seen.sees(102) and not seen.sees(104) and not seen.sees(105) and not seen.sees(200)
    wide = Visibility.parse(f"{(1 << 32) + 5}:{(1 << 32) + 10}:")  # an epoch later: 32-bit ids widen to it
    assert wide.sees(4) and wide.sees(7) and not wide.sees(10)
    assert wide.sees(0xFFFFFFF0)  # the end of the previous epoch


def _txn(xid: int, lsn: str, *rows: str) -> list[tuple[str, int, str]]:
    return [(lsn, xid, f"BEGIN {xid}"), *[(lsn, xid, r) for r in rows], (lsn, xid, f"COMMIT {xid}")]


def test_the_slot_advances_only_past_what_the_snapshot_saw() -> None:
    rows = [*_txn(10, "0/10", ITEM_UPDATE),
            *_txn(11, "0/20", "table kfm.datasets: UPDATE: id[text]:'ds-b' title[text]:'t'"),
            *_txn(13, "0/30", "table kfm.items: DELETE: id[text]:'gone'"),  # not seen: committed after it
            *_txn(12, "0/40", "table kfm.item_places: DELETE: item_id[text]:'kfm-item-2' place_id[text]:'p'"),
            *_txn(14, "0/50", "table kfm_ops.audit_ledger: INSERT: run_id[uuid]:'x'")]
    found = collect(rows, Visibility.parse("13:14:13"))
    assert found.items == {"kfm-item-1", "kfm-item-2"} and found.datasets == {"ds-b"} and found.references
    assert found.advance_to == "0/20"  # the leading run of seen transactions; 12 is read again next run
    assert (found.transactions, found.invisible) == (3, 2) and not found.truncated


def test_a_truncate_leaves_it_to_the_digests() -> None:
    found = collect(_txn(5, "0/1", "table kfm.items: TRUNCATE: (no-flags)"), Visibility.parse("9:9:"))
    assert found.truncated and found.advance_to == "0/1"
