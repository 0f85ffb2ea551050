-- Per database (templates and databases that refuse connections left out): transaction,
-- deadlock and block counters and the cache hit ratio since the statistics were reset (sizes:
-- database_sizes.sql).
-- TPS is rate(bgdb_pg_xact_commit_total + bgdb_pg_xact_rollback_total).
SELECT
    d.datname,
    s.xact_commit AS bgdb_pg_xact_commit_total,
    s.xact_rollback AS bgdb_pg_xact_rollback_total,
    s.deadlocks AS bgdb_pg_deadlocks_total,
    s.blks_hit AS bgdb_pg_blocks_hit_total,
    s.blks_read AS bgdb_pg_blocks_read_total,
    s.temp_bytes AS bgdb_pg_temp_bytes_total,
    s.conflicts AS bgdb_pg_conflicts_total,
    s.numbackends AS bgdb_pg_database_backends,
    coalesce(s.blks_hit::float8 / nullif(s.blks_hit + s.blks_read, 0), 1)
        AS bgdb_pg_cache_hit_ratio
FROM pg_database AS d
JOIN pg_stat_database AS s ON s.datid = d.oid
WHERE d.datallowconn AND NOT d.datistemplate
