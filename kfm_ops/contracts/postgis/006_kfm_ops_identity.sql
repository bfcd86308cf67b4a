-- The deployment's identity: which deployment this canonical database belongs to. Stamped only
-- by an explicit `kfm-maint migrate --environment X`; every derived store carries the same stamp
-- (`kfm-maint identity stamp`), and every action refuses a store that disagrees.
ALTER TABLE kfm_ops.environment ADD COLUMN IF NOT EXISTS deployment_id uuid;
ALTER TABLE kfm_ops.environment ADD COLUMN IF NOT EXISTS stamped_by uuid;
