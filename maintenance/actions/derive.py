"""Reading the canonical store for the derived stores: one stream, one document shape.

Restricted geometries are generalized in SQL, as the sensitivity policy says
(grid size read from the live OPA gate, fail-closed), so an exact restricted
geometry never leaves PostGIS.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg

from kfm_ops.clients.postgis import stream
from kfm_ops.errors import ActionFailed
from kfm_ops.hub import ServiceHub

ROWS_SQL = """
SELECT i.id, i.dataset_id, i.title, i.body, i.sensitivity, i.start_datetime, i.end_datetime,
       i.content_hash, i.updated_at,
       ST_AsGeoJSON(CASE WHEN i.sensitivity = 'restricted' THEN kfm_ops.generalize(i.geom, %(grid)s)
                         ELSE i.geom END, 6) AS geometry,
       ST_AsText(CASE WHEN i.sensitivity = 'restricted' THEN kfm_ops.generalize(i.geom, %(grid)s)
                      ELSE i.geom END, 6) AS geometry_wkt {links}
FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id
WHERE d.status = 'published' {extra}
ORDER BY i.id COLLATE "C"
"""


def grid_degrees(hub: ServiceHub) -> float:
    """The generalization grid from the sensitivity policy; no policy, no derived geometry."""
    try:
        grid = hub.client("policy").data("kfm/sensitivity/grid_degrees")
    except Exception as exc:  # noqa: BLE001 — fail closed whatever went wrong
        raise ActionFailed("derive", "policy", f"cannot read the sensitivity policy: {exc}",
                           hint="the policy gate must be up: derived stores never get ungeneralized geometry") from None
    if not isinstance(grid, int | float) or grid <= 0:
        raise ActionFailed("derive", "policy", f"kfm.sensitivity.grid_degrees is {grid!r}, expected a positive number")
    return float(grid)


def published_count(conn: psycopg.Connection) -> tuple[int, datetime | None]:
    row = conn.execute(
        "SELECT count(*), max(i.updated_at) FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id "
        "WHERE d.status = 'published'"
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


LINKS_SQL = """,
       (SELECT min(l.object) FROM kfm.prov_links l WHERE l.subject = i.id AND l.relation = 'wasGeneratedBy')
           AS generated_by,
       ARRAY(SELECT p.place_id FROM kfm.item_places p WHERE p.item_id = i.id ORDER BY 1) AS places,
       ARRAY(SELECT l.object FROM kfm.prov_links l WHERE l.subject = i.id AND l.relation = 'wasDerivedFrom'
             ORDER BY 1) AS derived_from"""


def stream_rows(conn: psycopg.Connection, grid: float, *, since: datetime | None = None, links: bool = False,
                batch: int = 2000) -> Iterator[dict[str, Any]]:
    """Published items as dicts, id-ordered, through a server-side cursor (memory flat)."""
    extra = "AND i.updated_at >= %(since)s" if since else ""
    yield from stream(conn, ROWS_SQL.format(extra=extra, links=LINKS_SQL if links else ""),
                      {"grid": grid, "since": since}, batch=batch, row_factory=psycopg.rows.dict_row)


# row_to_json writes compact JSON (json_build_object pads every key with spaces: 5% more bytes to ship and parse).
DOCUMENTS_SQL = """
SELECT i.id, row_to_json(doc)::text
FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id,
LATERAL (SELECT i.id, i.dataset_id, i.title, i.body,
                ST_AsGeoJSON(CASE WHEN i.sensitivity = 'restricted' THEN kfm_ops.generalize(i.geom, %(grid)s)
                                  ELSE i.geom END, 6)::json AS geometry,
                i.sensitivity = 'restricted' AS geometry_generalized, i.sensitivity,
                i.start_datetime, i.end_datetime, i.content_hash, i.updated_at) doc
WHERE d.status = 'published' {extra}
ORDER BY i.id COLLATE "C"
"""


def stream_documents(conn: psycopg.Connection, grid: float, *, since: datetime | None = None,
                     batch: int = 5000) -> Iterator[tuple[str, str]]:
    """(id, search document as JSON text) of published items, built by PostGIS: no per-row Python JSON work."""
    extra = "AND i.updated_at >= %(since)s" if since else ""
    for row in stream(conn, DOCUMENTS_SQL.format(extra=extra), {"grid": grid, "since": since}, batch=batch):
        yield row[0], row[1]


def record_watermark(conn: psycopg.Connection, store: str, watermark: datetime | None, run_id: str | None) -> None:
    if watermark is None:
        return
    conn.execute(
        "INSERT INTO kfm_ops.sync_watermarks (store, watermark, run_id, synced_at) VALUES (%s, %s, %s, now()) "
        "ON CONFLICT (store) DO UPDATE SET watermark = excluded.watermark, run_id = excluded.run_id, "
        "synced_at = excluded.synced_at",
        (store, watermark, run_id),
    )


def run_id_of(conn: psycopg.Connection) -> str | None:
    """The run_id of this control connection (from its application_name)."""
    row = conn.execute("SELECT current_setting('application_name')").fetchone()
    parts = (row[0] if row else "").split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "kfm-maint" else None
