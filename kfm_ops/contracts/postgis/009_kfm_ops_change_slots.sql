-- The change slots of `kfm-maint sync` (KFM_POSTGIS__CHANGE_SLOT; kfm_ops/changes.py): one logical
-- replication slot per derived store, created by the sync. A slot is trusted to name every change only
-- once a digest sync has read a snapshot opened after the slot was created (baselined_at); a slot
-- created again (lost, dropped) loses its baseline.
CREATE TABLE IF NOT EXISTS kfm_ops.change_slots (
    slot          text PRIMARY KEY,
    store         text NOT NULL,
    created_at    timestamptz NOT NULL,
    baselined_at  timestamptz,
    baseline_run  uuid
);
