-- The top_tables tables of the connected database with the most dead tuples (bounded label
-- set), with their dead share and the last (auto)vacuum. Partitions are tables here: vacuum
-- works on them one by one.
SELECT
    schemaname AS schema,
    relname AS table,
    n_dead_tup AS bgdb_pg_table_dead_tuples,
    n_live_tup AS bgdb_pg_table_live_tuples,
    coalesce(n_dead_tup::float8 / nullif(n_live_tup + n_dead_tup, 0), 0)
        AS bgdb_pg_table_dead_tuple_ratio,
    extract(epoch FROM greatest(last_vacuum, last_autovacuum))
        AS bgdb_pg_table_last_vacuum_timestamp_seconds
FROM pg_stat_user_tables
ORDER BY n_dead_tup DESC, relid
LIMIT %(top_tables)s
