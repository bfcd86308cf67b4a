-- kfm_ops: the harness's own operational state.
CREATE SCHEMA IF NOT EXISTS kfm_ops;

-- Which environment this database is. Actions refuse when it disagrees with their flags.
CREATE TABLE IF NOT EXISTS kfm_ops.environment (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    name       text NOT NULL CHECK (name IN ('dev', 'staging', 'production')),
    set_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per mutating run, written at start and completed at the end (even on failure).
CREATE TABLE IF NOT EXISTS kfm_ops.audit_ledger (
    run_id       uuid PRIMARY KEY,
    action       text NOT NULL,
    actor        text NOT NULL,
    environment  text NOT NULL,
    plan         jsonb NOT NULL,
    counts       jsonb NOT NULL DEFAULT '{}'::jsonb,
    outcome      text NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed', 'refused', 'aborted')),
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz,
    duration_ms  bigint
);
CREATE INDEX IF NOT EXISTS audit_ledger_action_idx ON kfm_ops.audit_ledger (action, started_at);

-- How far each derived store has been synced from the canonical store.
CREATE TABLE IF NOT EXISTS kfm_ops.sync_watermarks (
    store       text PRIMARY KEY CHECK (store IN ('search', 'graph', 'cache')),
    watermark   timestamptz NOT NULL,
    run_id      uuid,
    synced_at   timestamptz NOT NULL DEFAULT now()
);

-- The sensitivity policy's generalization: the grid cell (of `grid` degrees) holding
-- the geometry's centroid. Derived stores get this instead of a restricted exact geometry.
CREATE OR REPLACE FUNCTION kfm_ops.generalize(g geometry, grid double precision)
RETURNS geometry LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ST_MakeEnvelope(floor(ST_X(c) / grid) * grid, floor(ST_Y(c) / grid) * grid,
                           floor(ST_X(c) / grid) * grid + grid, floor(ST_Y(c) / grid) * grid + grid, 4326)
    FROM (SELECT ST_Centroid(g) AS c) AS centroid
$$;

-- What `kfm-maint sample-data init` loaded (dev and staging only), so a re-run is a no-op.
CREATE TABLE IF NOT EXISTS kfm_ops.sample_catalog (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seed       integer NOT NULL,
    items      integer NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);
