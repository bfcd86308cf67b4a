-- The check-run history: one row per run of the checks, one per check of a run. Written by
-- `kfm-maint check` (and `smoke`) after the pytest run, from its JSON report, through a write
-- connection (check sessions stay read-only); read by `kfm-maint report`. Retention is enforced
-- at every write: runs older than KFM_HISTORY__RETENTION_DAYS (default 90) and all but the newest
-- KFM_HISTORY__MAX_RUNS (default 5000) of an environment and suite are deleted with their results.
-- A narrow writer role instead of the owner (KFM_HISTORY__DSN) needs only:
--   GRANT USAGE ON SCHEMA kfm_ops TO <role>;
--   GRANT SELECT, INSERT, DELETE ON kfm_ops.check_runs, kfm_ops.check_results TO <role>;
CREATE TABLE IF NOT EXISTS kfm_ops.check_runs (
    run_id       uuid PRIMARY KEY,
    environment  text NOT NULL CHECK (environment IN ('dev', 'staging', 'production')),
    suite        text NOT NULL,                 -- which scheduled run (KFM_METRICS__JOB; kfm-smoke)
    selection    text NOT NULL DEFAULT '',      -- the pytest arguments that chose the checks
    started_at   timestamptz NOT NULL,
    duration_ms  bigint NOT NULL,
    exit_code    integer NOT NULL,
    counts       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS check_runs_suite_idx ON kfm_ops.check_runs (environment, suite, started_at);
CREATE INDEX IF NOT EXISTS check_runs_started_idx ON kfm_ops.check_runs (started_at);

CREATE TABLE IF NOT EXISTS kfm_ops.check_results (
    run_id          uuid NOT NULL REFERENCES kfm_ops.check_runs (run_id) ON DELETE CASCADE,
    check_id        text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('passed', 'failed', 'error', 'skipped', 'known', 'xpassed')),
    risk            text CHECK (risk IN ('low', 'medium', 'high')),   -- the severity
    area            text,
    duration_ms     bigint NOT NULL,
    message_digest  text,   -- sha256 (16 hex) of message and hint: the same failure gives the same digest
    message         text,   -- the failure message, redacted, at most 2000 characters
    hint            text,
    PRIMARY KEY (run_id, check_id)
);
CREATE INDEX IF NOT EXISTS check_results_check_idx ON kfm_ops.check_results (check_id);
