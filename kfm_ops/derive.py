"""How the derived stores are derived from the canonical one: one place, read by actions and checks.

Everything here reads PostGIS (the published views) and shapes rows for one derived
store: search documents (JSON built by PostGIS), graph items with the ids they link to,
cache summaries. Restricted geometries are generalized in SQL, as the sensitivity policy
says (grid size read from the live OPA gate, fail-closed), so an exact restricted
geometry never leaves PostGIS.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from kfm_ops import contracts
from kfm_ops.buckets import BUCKET_SQL, H1_SQL, H2_SQL
from kfm_ops.errors import ActionFailed, KfmError
from kfm_ops.partition import Slice
from kfm_ops.stores.policy import PolicyStore
from kfm_ops.stores.postgis import PUBLISHED_DATASETS, PUBLISHED_ITEMS, PostgisStore

_GEOMETRY = ("CASE WHEN i.sensitivity = 'restricted' THEN kfm_ops.generalize(i.geom, %(grid)s) "
             "ELSE i.geom END")
# The bucket digests' numbers (kfm_ops.buckets), written into every derived record.
_SYNC = (f"{BUCKET_SQL} AS sync_bucket, {H1_SQL} AS sync_h1, {H2_SQL} AS sync_h2"
         .format(id="i.id", hash="i.content_hash"))

ROWS_SQL = f"""
SELECT i.id, i.dataset_id, i.title, i.body, i.sensitivity, i.start_datetime, i.end_datetime,
       i.content_hash, i.updated_at, {_SYNC},
       ST_AsText({_GEOMETRY}, 6) AS geometry_wkt,
       (SELECT min(l.object) FROM kfm.prov_links l WHERE l.subject = i.id AND l.relation = 'wasGeneratedBy')
           AS generated_by,
       ARRAY(SELECT p.place_id FROM kfm.item_places p WHERE p.item_id = i.id ORDER BY 1) AS places,
       ARRAY(SELECT l.object FROM kfm.prov_links l JOIN {PUBLISHED_ITEMS} o ON o.id = l.object
             WHERE l.subject = i.id AND l.relation = 'wasDerivedFrom' ORDER BY 1) AS derived_from
FROM {PUBLISHED_ITEMS} i
{{extra}}
ORDER BY i.id COLLATE "C"
"""

# row_to_json writes compact JSON (json_build_object pads every key with spaces: 5% more bytes to ship and parse).
DOCUMENTS_SQL = f"""
SELECT i.id, row_to_json(doc)::text
FROM {PUBLISHED_ITEMS} i,
LATERAL (SELECT i.id, i.dataset_id, i.title, i.body, ST_AsGeoJSON({_GEOMETRY}, 6)::json AS geometry,
                i.sensitivity = 'restricted' AS geometry_generalized, i.sensitivity,
                i.start_datetime, i.end_datetime, i.content_hash, i.updated_at, {_SYNC}) doc
{{extra}}
{{order}}
"""
IN_ID_ORDER = 'ORDER BY i.id COLLATE "C"'

# What a search document derives from: a row of neither changed, no document did.
DOCUMENT_TABLES = ("kfm.items", "kfm.datasets")

DATASETS_SQL = f"""
SELECT id, title, license, publisher,
       encode(sha256(convert_to(concat_ws('|', id, title, license, publisher), 'UTF8')), 'hex') AS content_hash
FROM {PUBLISHED_DATASETS} ORDER BY id
"""
ACTIVITIES_SQL = f"""
SELECT DISTINCT a.id, a.label, a.software, a.version FROM kfm.prov_activities a
JOIN kfm.prov_links l ON l.subject = a.id AND l.relation = 'used'
JOIN {PUBLISHED_DATASETS} d ON d.id = l.object ORDER BY a.id
"""
USED_SQL = f"""
SELECT l.subject AS activity, l.object AS dataset FROM kfm.prov_links l JOIN {PUBLISHED_DATASETS} d ON d.id = l.object
WHERE l.relation = 'used' ORDER BY 1, 2
"""
PLACES_SQL = "SELECT id, name, kind FROM kfm.places ORDER BY id"
CHANGED_SINCE_SQL = f"SELECT id FROM {PUBLISHED_ITEMS} WHERE updated_at >= %s ORDER BY id"
# Item -> Item links whose both ends are published, in their own pass after every item exists
# (a link may point at an item of a later batch).
DERIVED_SQL = f"""
SELECT l.subject, l.object FROM kfm.prov_links l
JOIN {PUBLISHED_ITEMS} s ON s.id = l.subject JOIN {PUBLISHED_ITEMS} o ON o.id = l.object
WHERE l.relation = 'wasDerivedFrom' ORDER BY 1, 2
"""
# The graph's reference nodes by label: what the sync writes for each (few rows; merged whole).
REFERENCE_SQL = {"Dataset": DATASETS_SQL, "Activity": ACTIVITIES_SQL, "Place": PLACES_SQL}
# The items derived from any of some ids: their derived-from links change when one of those changes or leaves.
DERIVED_TO_SQL = "SELECT DISTINCT subject FROM kfm.prov_links WHERE relation = 'wasDerivedFrom' AND object = ANY(%s)"
DERIVED_SQL_FOR_IDS = DERIVED_SQL.replace("ORDER BY 1, 2", "AND l.subject = ANY(%s) ORDER BY 1, 2")
SUMMARY_SQL = """
SELECT s.dataset_id, d.title, s.item_count, s.restricted_count,
       CASE WHEN s.extent IS NULL THEN '' ELSE
         concat_ws(',', round(ST_XMin(s.extent)::numeric, 6), round(ST_YMin(s.extent)::numeric, 6),
                        round(ST_XMax(s.extent)::numeric, 6), round(ST_YMax(s.extent)::numeric, 6)) END AS extent_bbox,
       s.newest_update
FROM kfm_cache.dataset_stats s JOIN kfm.datasets d ON d.id = s.dataset_id ORDER BY s.dataset_id
"""


def grid_degrees(policy: PolicyStore, contracts_dir: Path | None = None) -> float:
    """The generalization grid from the sensitivity policy (where: policy.json); no policy, no derived geometry."""
    path = contracts.load("policy", contracts_dir)["sensitivity"]["grid_degrees"]
    try:
        grid = policy.data(path)
    except KfmError as exc:  # fail closed whatever went wrong
        raise ActionFailed("derive", "policy", f"cannot read the sensitivity policy: {exc.message}",
                           hint="the policy gate must be up: derived stores never get ungeneralized geometry") from None
    if not isinstance(grid, int | float) or grid <= 0:
        raise ActionFailed("derive", "policy", f"data.{path} is {grid!r}, expected a positive number")
    return float(grid)


def _only(since: datetime | None, ids: list[str] | None, partition: Slice | None = None) -> str:
    """The WHERE clause of a derive query restricted to changes since a time, or to some ids; and to a
    slice of the catalog (its parameters: :func:`_params`)."""
    found = ["i.id = ANY(%(ids)s)"] if ids is not None else ["i.updated_at >= %(since)s"] if since else []
    if partition is not None and partition.count > 1:
        found.append(partition.where("i.id"))
    return f"WHERE {' AND '.join(found)}" if found else ""


def _params(grid: float, since: datetime | None, ids: list[str] | None, partition: Slice | None) -> dict[str, Any]:
    return {"grid": grid, "since": since, "ids": ids, **(partition.params() if partition is not None else {})}


def search_documents(postgis: PostgisStore, grid: float, *, since: datetime | None = None,
                     ids: list[str] | None = None, batch: int = 5000, partition: Slice | None = None,
                     in_id_order: bool = False) -> Iterator[tuple[str, str]]:
    """(id, search document as JSON text) of published items, built by PostGIS: no per-row Python JSON work.

    A load takes them as the server reads them; ``in_id_order`` (for a sorted merge) costs a sort of
    every document before the first one comes, about a quarter of the stream's server time at 1M.
    """
    query = DOCUMENTS_SQL.format(extra=_only(since, ids, partition), order=IN_ID_ORDER if in_id_order else "")
    yield from postgis.stream(query, _params(grid, since, ids, partition), batch=batch)


def graph_items(postgis: PostgisStore, grid: float, *, since: datetime | None = None, ids: list[str] | None = None,
                batch: int = 2000, partition: Slice | None = None) -> Iterator[dict[str, Any]]:
    """Published items as graph upsert parameters: the Item properties and the ids its relationships point at.

    ``links_hash`` covers what an item points at (activity, places, derived-from items): the
    canonical content_hash does not, and a changed link must reach the graph too.
    """
    for r in postgis.stream_dicts(ROWS_SQL.format(extra=_only(since, ids, partition)),
                                  _params(grid, since, ids, partition), batch=batch):
        links = f"{r['generated_by'] or ''}|{','.join(r['places'])}|{','.join(r['derived_from'])}"
        yield {"id": r["id"], "dataset_id": r["dataset_id"], "title": r["title"], "sensitivity": r["sensitivity"],
               "geometry_wkt": r["geometry_wkt"], "content_hash": r["content_hash"],
               "links_hash": hashlib.blake2b(links.encode(), digest_size=16).hexdigest(),
               "updated_at": r["updated_at"].isoformat(), "generated_by": r["generated_by"],
               "places": list(r["places"]), "derived_from": list(r["derived_from"]), "sync_bucket": r["sync_bucket"],
               "sync_h1": r["sync_h1"], "sync_h2": r["sync_h2"]}


ITEM_PROPERTIES = ("id", "dataset_id", "title", "sensitivity", "geometry_wkt", "content_hash", "links_hash",
                   "updated_at", "sync_bucket", "sync_h1", "sync_h2")


def graph_records(postgis: PostgisStore, grid: float, *, ids: list[str] | None = None,
                  partition: Slice | None = None) -> Iterator[tuple[str, Any]]:
    """(id, record) of each published item as the graph sync leaves its Item node: the properties, and per
    relationship type the ids it points at (only nodes the sync writes: published datasets and items, the
    activities that used one, every place) — what :meth:`GraphStore.item_records` reads back."""
    activities = {r["id"] for r in postgis.dicts(ACTIVITIES_SQL)}
    for row in graph_items(postgis, grid, ids=ids, partition=partition):
        links = {"IN_DATASET": [row["dataset_id"]], "LOCATED_IN": sorted(row["places"]),
                 "WAS_GENERATED_BY": [row["generated_by"]] if row["generated_by"] in activities else [],
                 "WAS_DERIVED_FROM": sorted(row["derived_from"])}
        yield row["id"], {"properties": {k: row[k] for k in ITEM_PROPERTIES}, **{t: v for t, v in links.items() if v}}


def summary_record(content: dict[str, Any]) -> dict[str, Any]:
    """A cache summary hash as the rebuild writes it, but for its run's own fields (built_at, run_id)."""
    return {**{k: str(v) for k, v in content.items()}, "content_hash": summary_hash(content)}


def summary_hash(fields: dict[str, Any]) -> str:
    """The content hash a cache summary carries."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def cache_summaries(postgis: PostgisStore) -> list[tuple[dict[str, Any], datetime | None]]:
    """Each published dataset's summary content (from the stats view) and its newest item update."""
    found = []
    for dataset_id, title, item_count, restricted, bbox, newest in postgis.rows(SUMMARY_SQL):
        found.append(({"dataset_id": dataset_id, "title": title, "item_count": item_count,
                       "restricted_count": restricted, "extent_bbox": bbox}, newest))
    return found
