-- The top_tables largest tables of the connected database, heap + indexes + TOAST. A
-- partitioned table is reported once, as the sum of its leaf partitions; partitions themselves
-- are not listed (daily partitions would crowd out everything else). Runs at most every 300 s
-- (min_interval_seconds in exporters/queries.py): sizes change slowly.
WITH sized AS (
    SELECT
        c.relnamespace,
        c.relname,
        CASE WHEN c.relkind = 'p' THEN (
            SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)
            FROM pg_partition_tree(c.oid) AS t
            WHERE t.isleaf
        ) ELSE pg_total_relation_size(c.oid) END AS bytes
    FROM pg_class AS c
    WHERE c.relkind IN ('r', 'm', 'p')
      AND NOT c.relispartition
      AND c.relpersistence <> 't'
      AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
)
SELECT n.nspname AS schema, s.relname AS table, s.bytes AS bgdb_pg_table_size_bytes
FROM sized AS s
JOIN pg_namespace AS n ON n.oid = s.relnamespace
WHERE s.bytes IS NOT NULL
ORDER BY s.bytes DESC, s.relname
LIMIT %(top_tables)s
