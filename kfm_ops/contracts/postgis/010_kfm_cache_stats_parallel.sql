-- kfm_cache.dataset_stats, same columns and rows, defined so PostgreSQL can refresh it in parallel.
-- 003 aggregated `datasets LEFT JOIN items`: a join that keeps the datasets side cannot run under a
-- parallel scan of items in PostgreSQL 15, so every refresh read the whole items heap in one process.
-- Here the items of published datasets are aggregated first (a parallel partial aggregate), and the
-- published datasets are joined to those sums, so a dataset without items still has its row (0 items).
-- A materialized view's query cannot be replaced: the view is rebuilt in this one transaction, filled
-- if it was filled (readers wait on the lock, then see full rows), with the grants it had.
DO $$
DECLARE
    populated boolean := coalesce((SELECT ispopulated FROM pg_matviews
                                    WHERE schemaname = 'kfm_cache' AND matviewname = 'dataset_stats'), false);
    grants text[] := ARRAY(
        SELECT format('GRANT %s ON kfm_cache.dataset_stats TO %s', a.privilege_type,
                      CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END)
        FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = to_regclass('kfm_cache.dataset_stats') AND a.grantee <> c.relowner);
    statement text;
BEGIN
    DROP MATERIALIZED VIEW IF EXISTS kfm_cache.dataset_stats;
    CREATE MATERIALIZED VIEW kfm_cache.dataset_stats AS
    SELECT d.id                                AS dataset_id,
           coalesce(s.item_count, 0)           AS item_count,
           coalesce(s.restricted_count, 0)     AS restricted_count,
           s.extent,
           s.newest_update
    FROM kfm.datasets d
    LEFT JOIN (
        SELECT i.dataset_id,
               count(*)                                         AS item_count,
               count(*) FILTER (WHERE i.sensitivity = 'restricted') AS restricted_count,
               -- extents are built from generalized geometry so restricted sites do not leak
               ST_Extent(CASE WHEN i.sensitivity = 'restricted' THEN kfm_ops.generalize(i.geom, 0.1)
                              ELSE i.geom END)::geometry        AS extent,
               max(i.updated_at)                                AS newest_update
        FROM kfm.items i
        JOIN kfm.datasets p ON p.id = i.dataset_id AND p.status = 'published'
        GROUP BY i.dataset_id
    ) s ON s.dataset_id = d.id
    WHERE d.status = 'published'
    WITH NO DATA;
    CREATE UNIQUE INDEX dataset_stats_pk ON kfm_cache.dataset_stats (dataset_id);
    FOREACH statement IN ARRAY grants LOOP
        EXECUTE statement;
    END LOOP;
    IF populated THEN
        REFRESH MATERIALIZED VIEW kfm_cache.dataset_stats;
    END IF;
END
$$;
