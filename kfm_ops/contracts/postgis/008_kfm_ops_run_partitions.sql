-- The partitions of a partitioned run (`kfm-maint reindex|sync --partitions N`, worked by
-- `--partition i/N`): the audit ledger's row for the run (its coordinator), and here one row per
-- partition. The coordinator writes them with the snapshot it exported and holds open; each worker
-- joins that snapshot, does its bucket range and records its outcome and counts (its digest); a
-- failed partition is retried alone, on the same snapshot, while the coordinator waits. The run
-- completes when every partition has succeeded.
CREATE TABLE IF NOT EXISTS kfm_ops.run_partitions (
    run_id       uuid NOT NULL REFERENCES kfm_ops.audit_ledger (run_id) ON DELETE CASCADE,
    part         integer NOT NULL CHECK (part >= 0),
    parts        integer NOT NULL CHECK (parts >= 1 AND part < parts),
    snapshot     text NOT NULL,                 -- pg_export_snapshot() of the coordinator
    target       jsonb NOT NULL,                -- what the partitions write (the new index, the stores)
    outcome      text NOT NULL DEFAULT 'pending' CHECK (outcome IN ('pending', 'running', 'succeeded', 'failed')),
    worker       uuid,                          -- run_id of the worker that last took the partition
    attempts     integer NOT NULL DEFAULT 0,
    counts       jsonb NOT NULL DEFAULT '{}'::jsonb,
    error        text,
    started_at   timestamptz,
    ended_at     timestamptz,
    PRIMARY KEY (run_id, part)
);
