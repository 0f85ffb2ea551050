-- The top_tables tables of the connected database with the most dead tuples (bounded label
-- set), with their dead share and the last (auto)vacuum. Partitions are tables here (vacuum
-- works on them one by one); partitioned parents, which hold no rows, are left out.
-- The tables of pg_stat_user_tables, but read with only the five statistics functions needed
-- (the view calls some twenty per table, and there is a table per daily partition).
SELECT
    n.nspname AS schema,
    c.relname AS table,
    pg_stat_get_dead_tuples(c.oid) AS bgdb_pg_table_dead_tuples,
    pg_stat_get_live_tuples(c.oid) AS bgdb_pg_table_live_tuples,
    coalesce(pg_stat_get_dead_tuples(c.oid)::float8
             / nullif(pg_stat_get_live_tuples(c.oid) + pg_stat_get_dead_tuples(c.oid), 0), 0)
        AS bgdb_pg_table_dead_tuple_ratio,
    date_part('epoch', greatest(pg_stat_get_last_vacuum_time(c.oid),
                                pg_stat_get_last_autovacuum_time(c.oid)))
        AS bgdb_pg_table_last_vacuum_timestamp_seconds
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
ORDER BY pg_stat_get_dead_tuples(c.oid) DESC, c.oid
LIMIT %(top_tables)s
