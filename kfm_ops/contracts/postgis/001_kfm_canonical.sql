-- kfm: the canonical store (truth path). Written by pipelines; kfm-ops only reads it
-- (sample-data init is the one dev-only exception).
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE SCHEMA IF NOT EXISTS kfm;

CREATE TABLE IF NOT EXISTS kfm.datasets (
    id           text PRIMARY KEY,
    title        text NOT NULL,
    license      text,
    publisher    text,
    status       text NOT NULL CHECK (status IN ('draft', 'published', 'retired')),
    sensitivity  text NOT NULL CHECK (sensitivity IN ('public', 'restricted')),
    dcat         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS kfm.items (
    id             text PRIMARY KEY,
    dataset_id     text NOT NULL REFERENCES kfm.datasets (id),
    title          text NOT NULL,
    body           text NOT NULL DEFAULT '',
    geom           geometry(Geometry, 4326) NOT NULL,
    start_datetime timestamptz,
    end_datetime   timestamptz,
    stac           jsonb NOT NULL,
    sensitivity    text NOT NULL CHECK (sensitivity IN ('public', 'restricted')),
    content_hash   text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS items_geom_gist ON kfm.items USING gist (geom);
CREATE INDEX IF NOT EXISTS items_dataset_idx ON kfm.items (dataset_id);
CREATE INDEX IF NOT EXISTS items_updated_at_idx ON kfm.items (updated_at);

CREATE TABLE IF NOT EXISTS kfm.places (
    id    text PRIMARY KEY,
    name  text NOT NULL,
    kind  text NOT NULL,
    geom  geometry(Geometry, 4326) NOT NULL
);
CREATE INDEX IF NOT EXISTS places_geom_gist ON kfm.places USING gist (geom);

CREATE TABLE IF NOT EXISTS kfm.item_places (
    item_id  text NOT NULL REFERENCES kfm.items (id),
    place_id text NOT NULL REFERENCES kfm.places (id),
    PRIMARY KEY (item_id, place_id)
);

-- PROV-O: activities and the links between entities (items, datasets) and activities.
CREATE TABLE IF NOT EXISTS kfm.prov_activities (
    id          text PRIMARY KEY,
    label       text NOT NULL,
    software    text NOT NULL,
    version     text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz
);

CREATE TABLE IF NOT EXISTS kfm.prov_links (
    subject    text NOT NULL,
    relation   text NOT NULL CHECK (relation IN ('used', 'wasGeneratedBy', 'wasDerivedFrom')),
    object     text NOT NULL,
    PRIMARY KEY (subject, relation, object)
);
CREATE INDEX IF NOT EXISTS prov_links_object_idx ON kfm.prov_links (object);
