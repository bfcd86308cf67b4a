"""``kfm-maint sample-data init``: a deterministic Kansas catalog in the canonical store.

A stand-in for pipeline output, for dev and staging only: datasets with DCAT
records, STAC items with valid geometries inside Kansas, PROV activities and
links, places, a share of restricted sites and a few draft/retired items. The
load is one transaction (TRUNCATE + COPY, streamed row by row, memory flat), so
readers see the old catalog or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kfm_ops.errors import ActionRefused, UsageError
from kfm_ops.hub import ServiceHub
from maintenance.action import Plan, Progress, RunContext

MAX_ITEMS = 5_000_000
BASE_TIME = datetime(2026, 10, 1, tzinfo=UTC)
# Kansas, with a margin inside the state line.
LON = (-101.9, -94.7)
LAT = (37.05, 39.95)

PLACES = [
    ("topeka", "Topeka", -95.6752, 39.0473), ("wichita", "Wichita", -97.3301, 37.6872),
    ("kansas-city", "Kansas City", -94.6275, 39.1141), ("lawrence", "Lawrence", -95.2353, 38.9717),
    ("manhattan", "Manhattan", -96.5717, 39.1836), ("salina", "Salina", -97.6114, 38.8403),
    ("hutchinson", "Hutchinson", -97.9298, 38.0608), ("dodge-city", "Dodge City", -100.0171, 37.7528),
    ("garden-city", "Garden City", -100.8727, 37.9717), ("hays", "Hays", -99.3268, 38.8792),
    ("emporia", "Emporia", -96.1817, 38.4039), ("liberal", "Liberal", -100.9210, 37.0431),
    ("pittsburg", "Pittsburg", -94.7049, 37.4109), ("great-bend", "Great Bend", -98.7648, 38.3645),
    ("colby", "Colby", -101.0524, 39.3958), ("abilene", "Abilene", -97.2139, 38.9172),
    ("fort-scott", "Fort Scott", -94.7083, 37.8398), ("goodland", "Goodland", -101.7107, 39.3508),
]

# (id, title, publisher, license, status, sensitivity)
DATASETS = [
    ("kgs-well-logs", "Kansas Geological Survey oil and gas well logs", "Kansas Geological Survey", "CC-BY-4.0"),
    ("flint-hills-burns", "Flint Hills prairie burn scars", "Kansas State University", "CC-BY-4.0"),
    ("township-plats", "Historic township plats", "Kansas Historical Society", "CC0-1.0"),
    ("smoky-hill-gauges", "Smoky Hill River stream gauges", "USGS Kansas Water Science Center", "CC0-1.0"),
    ("santa-fe-trail", "Santa Fe Trail ruts and swales survey", "National Park Service", "CC-BY-4.0"),
    ("courthouses", "County courthouse registry", "Kansas Historical Society", "CC0-1.0"),
    ("playa-wetlands", "High Plains playa wetlands", "Kansas Biological Survey", "CC-BY-4.0"),
    ("grain-elevators", "Grain elevator inventory", "Kansas Department of Agriculture", "CC-BY-4.0"),
    ("soil-pits", "Soil survey pits", "NRCS Kansas", "CC0-1.0"),
    ("lesser-prairie-chicken", "Lesser prairie-chicken lek sites", "Kansas Wildlife and Parks", "CC-BY-NC-4.0"),
]
RESTRICTED_DATASET = ("archaeo-sites", "Archaeological site registry", "Kansas State Archaeologist", "restricted-use")
DRAFT_DATASET = ("draft-aquifer-levels", "Ogallala aquifer levels (draft)", "Kansas Water Office", None)
RETIRED_DATASET = ("retired-rail-depots", "Railroad depots (superseded)", "Kansas Historical Society", "CC0-1.0")


@dataclass(frozen=True)
class Dataset:
    id: str
    title: str
    publisher: str | None
    license: str | None
    status: str
    sensitivity: str


def datasets() -> list[Dataset]:
    found = [Dataset(i, t, p, lic, "published", "public") for i, t, p, lic in DATASETS]
    found.append(Dataset(*RESTRICTED_DATASET, "published", "restricted"))
    found.append(Dataset(*DRAFT_DATASET, "draft", "public"))
    found.append(Dataset(*RETIRED_DATASET, "retired", "public"))
    return found


def _dataset_for(k: int, rng: random.Random, all_sets: list[Dataset]) -> Dataset:
    if k % 250 == 249:
        return all_sets[-2]  # a few drafts
    if k % 500 == 498:
        return all_sets[-1]  # a few retired
    if k % 12 == 0:
        return all_sets[-3]  # restricted archaeological sites (~8%)
    return all_sets[rng.randrange(len(DATASETS))]


def _geometry(rng: random.Random) -> tuple[str, dict[str, Any], list[float]]:
    x, y = rng.uniform(*LON), rng.uniform(*LAT)
    if rng.random() < 0.7:
        x, y = round(x, 6), round(y, 6)
        return f"POINT({x} {y})", {"type": "Point", "coordinates": [x, y]}, [x, y, x, y]
    w, h = round(rng.uniform(0.002, 0.05), 6), round(rng.uniform(0.002, 0.05), 6)
    x0, y0 = round(x, 6), round(y, 6)
    x1, y1 = round(x0 + w, 6), round(y0 + h, 6)
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    wkt = "POLYGON((" + ", ".join(f"{a} {b}" for a, b in ring) + "))"
    return wkt, {"type": "Polygon", "coordinates": [ring]}, [x0, y0, x1, y1]


def _nearest_place(x: float, y: float) -> str:
    return min(PLACES, key=lambda p: (p[2] - x) ** 2 + (p[3] - y) ** 2)[1]


def content_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _activity_id(ds: Dataset) -> str:
    return f"kfm-act-{ds.id}"


def items(n: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """Rows for kfm.items, deterministically from ``seed``."""
    rng = random.Random(seed)  # noqa: S311 — reproducible sample data, not secrets
    all_sets = datasets()
    for k in range(n):
        ds = _dataset_for(k, rng, all_sets)
        item_id = f"kfm-item-{k:07d}"
        wkt, geojson, bbox = _geometry(rng)
        place_name = _nearest_place(bbox[0], bbox[1])
        sensitivity = "restricted" if ds.sensitivity == "restricted" else "public"
        start = datetime(1850 + rng.randrange(170), 1 + rng.randrange(12), 1, tzinfo=UTC)
        end = start + timedelta(days=rng.randrange(1, 3650))
        title = f"{ds.title} — record {k} near {place_name}"
        body = f"{ds.title} record {k}, surveyed near {place_name}, Kansas. Published by {ds.publisher}."
        processed = f"data/processed/{ds.id}/{item_id}"
        properties: dict[str, Any] = {
            "title": title, "datetime": None,
            "start_datetime": start.isoformat(), "end_datetime": end.isoformat(),
            "kfm:policy_label": sensitivity,
            "kfm:spec_hash": content_hash("spec", ds.id, "v3"),
            "kfm:evidence_ref": f"kfm://evidence/{ds.id}/{item_id}",
            "kfm:run_receipt_url": f"https://kfm.example/receipts/{_activity_id(ds)}",
            "kfm:release_manifest_ref": f"kfm://releases/{ds.id}/2026.10",
            "processing:software": {"kfm-pipelines": "3.2.1"},
            "processing:version": "3.2.1",
            "processing:datetime": BASE_TIME.isoformat(),
        }
        assets = {"data": {"href": processed + ".json"}, "provenance": {"href": processed + ".prov.json"}}
        if ds.status == "draft":  # drafts are unfinished pipeline output: not publishable as they are
            properties.pop("kfm:spec_hash")
            assets["data"]["href"] = f"data/work/{ds.id}/{item_id}.json"
        stac = {
            "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": ds.id,
            "geometry": geojson, "bbox": bbox, "properties": properties,
            "links": [
                {"rel": "collection", "href": f"https://kfm.example/collections/{ds.id}"},
                {"rel": "provenance", "href": f"https://kfm.example/prov/{item_id}"},
                {"rel": "evidence", "href": f"https://kfm.example/evidence/{ds.id}/{item_id}"},
                {"rel": "release-manifest", "href": f"https://kfm.example/releases/{ds.id}/2026.10"},
            ],
            "assets": assets,
        }
        stac_json = json.dumps(stac, sort_keys=True, separators=(",", ":"))
        digest = content_hash(item_id, ds.id, title, body, wkt, sensitivity, stac_json)
        updated = BASE_TIME + timedelta(seconds=k)
        yield (item_id, ds.id, title, body, f"SRID=4326;{wkt}", start, end, stac_json, sensitivity, digest, updated)


@dataclass
class SamplePlan:
    loaded: tuple[int, int, int] | None  # (seed, items, rows in kfm.items) of the catalog there now


class SampleDataInit:
    name = "sample-data-init"
    stores = ("canonical",)
    derived: tuple[str, ...] = ()
    # what it changes: the canonical catalog — its schema, health and governance, not the derived stores
    verify_markers = "postgis and not (search or graph or cache or policy or llm)"
    bootstraps_schema = False

    def __init__(self, *, items: int = 2000, seed: int = 42, force: bool = False) -> None:
        if not 1 <= items <= MAX_ITEMS:
            raise UsageError(f"--items {items} is out of range", hint=f"use a whole number from 1 to {MAX_ITEMS}")
        if not 0 <= seed <= 2**31 - 1:
            raise UsageError(f"--seed {seed} is out of range", hint="use a whole number from 0 to 2147483647")
        self.items = items
        self.seed = seed
        self.force = force

    def plan(self, hub: ServiceHub) -> Plan[SamplePlan]:
        conn = hub.postgis()
        marker = conn.environment_marker()
        if marker not in ("dev", "staging"):  # the database's own marker decides, never a setting
            raise ActionRefused(f"sample-data init runs only on a database marked dev or staging (this one: {marker})",
                                hint="the sample catalog is for dev and staging stores only")
        loaded = None
        if conn.exists("kfm_ops.sample_catalog"):
            row = conn.execute("SELECT seed, items FROM kfm_ops.sample_catalog").fetchone()
            count = conn.scalar("SELECT count(*) FROM kfm.items")
            loaded = (row[0], row[1], count) if row else None
        same = loaded is not None and loaded == (self.seed, self.items, self.items) and not self.force
        return Plan(
            what=f"replace the canonical catalog with the sample catalog (seed {self.seed})",
            where=[f"{conn.where()}: kfm.datasets, kfm.items, kfm.places, kfm.item_places, kfm.prov_*"],
            how_much={"items": self.items, "datasets": len(datasets()), "places": len(PLACES),
                      "currently_loaded": loaded[2] if loaded else 0},
            rollback="dev/staging data only: re-run with the previous --items/--seed (deterministic)",
            steps=[] if same else ["TRUNCATE + COPY in one transaction"],
            details=SamplePlan(loaded),
            nothing_to_do=same,
        )

    def apply(self, hub: ServiceHub, plan: Plan[SamplePlan], run: RunContext) -> dict[str, Any]:
        if plan.nothing_to_do:
            return {"items_written": 0, "unchanged": self.items}
        conn = hub.postgis(write=True)
        with conn.transaction():
            conn.execute("TRUNCATE kfm.item_places, kfm.prov_links, kfm.prov_activities, kfm.items, "
                         "kfm.places, kfm.datasets")
            conn.copy("COPY kfm.datasets (id, title, license, publisher, status, sensitivity, dcat, "
                      "created_at, updated_at) FROM STDIN", _dataset_rows())
            conn.copy("COPY kfm.places (id, name, kind, geom) FROM STDIN",
                      ((pid, name, "city", f"SRID=4326;POINT({x} {y})") for pid, name, x, y in PLACES))
            conn.copy("COPY kfm.prov_activities (id, label, software, version, started_at, ended_at) FROM STDIN",
                      ((_activity_id(ds), f"pipeline run for {ds.id}", "kfm-pipelines", "3.2.1",
                        BASE_TIME - timedelta(hours=2), BASE_TIME - timedelta(hours=1)) for ds in datasets()))
            written = conn.copy("COPY kfm.items (id, dataset_id, title, body, geom, start_datetime, end_datetime, "
                                "stac, sensitivity, content_hash, updated_at) FROM STDIN",
                                _counted(items(self.items, self.seed), run.progress, self.items))
            # Links are derived in SQL from the rows just loaded: no second pass in Python, memory flat.
            conn.execute("INSERT INTO kfm.prov_links SELECT 'kfm-act-' || id, 'used', id FROM kfm.datasets")
            conn.execute("INSERT INTO kfm.prov_links SELECT id, 'wasGeneratedBy', 'kfm-act-' || dataset_id "
                         "FROM kfm.items")
            conn.execute("INSERT INTO kfm.prov_links SELECT id, 'wasDerivedFrom', "
                         "'kfm-item-' || lpad((substr(id, 10)::int - 1)::text, 7, '0') FROM kfm.items "
                         "WHERE substr(id, 10)::int % 20 = 5")
            conn.execute("INSERT INTO kfm.item_places SELECT i.id, (SELECT p.id FROM kfm.places p "
                         "ORDER BY p.geom <-> i.geom LIMIT 1) FROM kfm.items i")
            conn.execute("INSERT INTO kfm_ops.sample_catalog (seed, items) VALUES (%s, %s) ON CONFLICT (singleton) "
                         "DO UPDATE SET seed = excluded.seed, items = excluded.items, loaded_at = now()",
                         (self.seed, self.items))
        conn.execute("ANALYZE kfm.items")
        run.progress("items", written, self.items)
        return {"items_written": written, "datasets_written": len(datasets()), "places_written": len(PLACES)}


def _dataset_rows() -> Iterator[tuple[Any, ...]]:
    for ds in datasets():
        dcat = {"@type": "dcat:Dataset", "dct:title": ds.title, "dct:publisher": ds.publisher,
                "dct:license": ds.license, "dcat:keyword": ["Kansas"]}
        yield (ds.id, ds.title, ds.license, ds.publisher, ds.status, ds.sensitivity, json.dumps(dcat),
               BASE_TIME, BASE_TIME)


def _counted(rows: Iterator[tuple[Any, ...]], progress: Progress, total: int) -> Iterator[tuple[Any, ...]]:
    for n, row in enumerate(rows, 1):
        if n % 10_000 == 0:
            progress("items", n, total)
        yield row
