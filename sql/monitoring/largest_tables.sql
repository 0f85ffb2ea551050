-- Largest tables, partitioned tables counted with all their partitions.
-- Catalog and size functions only. Sizes in bytes; row_estimate from the planner statistics.
SELECT n.nspname AS schema_name,
       c.relname AS table_name,
       sz.partition_count,
       sz.total_bytes,
       sz.table_bytes,
       sz.index_bytes,
       sz.total_bytes - sz.table_bytes - sz.index_bytes AS toast_bytes,
       sz.row_estimate
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE leaf.is_partition) AS partition_count,
           sum(pg_total_relation_size(leaf.relid)) AS total_bytes,
           sum(pg_relation_size(leaf.relid)) AS table_bytes,
           sum(pg_indexes_size(leaf.relid)) AS index_bytes,
           sum(greatest(pc.reltuples, 0))::bigint AS row_estimate
    FROM (SELECT c.oid AS relid, false AS is_partition WHERE c.relkind <> 'p'
          UNION ALL
          SELECT pt.relid, true FROM pg_partition_tree(c.oid) pt
          WHERE pt.isleaf AND c.relkind = 'p'
         ) leaf
    JOIN pg_class pc ON pc.oid = leaf.relid
) sz
WHERE c.relkind IN ('r', 'p', 'm')
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY sz.total_bytes DESC NULLS LAST, c.relname
LIMIT 20;
