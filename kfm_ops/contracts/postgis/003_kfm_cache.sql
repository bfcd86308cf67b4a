-- kfm_cache: derived per-dataset stats and extents, refreshed CONCURRENTLY by kfm-maint.
CREATE SCHEMA IF NOT EXISTS kfm_cache;

CREATE MATERIALIZED VIEW IF NOT EXISTS kfm_cache.dataset_stats AS
SELECT d.id                                   AS dataset_id,
       count(i.id)                            AS item_count,
       count(i.id) FILTER (WHERE i.sensitivity = 'restricted') AS restricted_count,
       -- extents are built from generalized geometry so restricted sites do not leak
       ST_Extent(CASE WHEN i.sensitivity = 'restricted' THEN kfm_ops.generalize(i.geom, 0.1) ELSE i.geom END)::geometry AS extent,
       max(i.updated_at)                      AS newest_update
FROM kfm.datasets d
LEFT JOIN kfm.items i ON i.dataset_id = d.id
WHERE d.status = 'published'
GROUP BY d.id
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS dataset_stats_pk ON kfm_cache.dataset_stats (dataset_id);
