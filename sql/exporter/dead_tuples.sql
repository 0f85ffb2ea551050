-- The top_tables tables of the connected database with the most dead tuples (bounded label
-- set), with their dead share and the last (auto)vacuum. Partitions are tables here (vacuum
-- works on them one by one); partitioned parents, which hold no rows, are left out.
SELECT
    s.schemaname AS schema,
    s.relname AS table,
    s.n_dead_tup AS bgdb_pg_table_dead_tuples,
    s.n_live_tup AS bgdb_pg_table_live_tuples,
    coalesce(s.n_dead_tup::float8 / nullif(s.n_live_tup + s.n_dead_tup, 0), 0)
        AS bgdb_pg_table_dead_tuple_ratio,
    extract(epoch FROM greatest(s.last_vacuum, s.last_autovacuum))
        AS bgdb_pg_table_last_vacuum_timestamp_seconds
FROM pg_stat_user_tables AS s
WHERE NOT EXISTS (SELECT FROM pg_partitioned_table AS p WHERE p.partrelid = s.relid)
ORDER BY s.n_dead_tup DESC, s.relid
LIMIT %(top_tables)s
