-- The one definition of "published", in the harness's own schema: every check, action and
-- benchmark reads these views, so they can never disagree. (Never an object in kfm: the
-- canonical schema belongs to the pipelines.)
CREATE OR REPLACE VIEW kfm_ops.published_datasets AS
SELECT d.* FROM kfm.datasets d WHERE d.status = 'published';

CREATE OR REPLACE VIEW kfm_ops.published_items AS
SELECT i.* FROM kfm.items i JOIN kfm.datasets d ON d.id = i.dataset_id WHERE d.status = 'published';
