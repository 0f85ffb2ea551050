-- Slowest statements by mean execution time in the current database (PostgreSQL 13 and later:
-- *_exec_time columns; slowest_pg12.sql has the same columns from PostgreSQL 12's *_time).
-- Needs the pg_stat_statements extension in the database (the deploy creates it), hence not in
-- sql/monitoring/ itself. Superusers' statements (maintenance jobs, this tool) are left out:
-- what matters is what the agents wait for. Times in milliseconds.
SELECT s.queryid,
       r.rolname AS user_name,
       s.calls,
       s.mean_exec_time AS mean_ms,
       s.max_exec_time AS max_ms,
       s.total_exec_time AS total_ms,
       s.rows,
       100.0 * s.shared_blks_hit / nullif(s.shared_blks_hit + s.shared_blks_read, 0)
           AS cache_hit_percent,
       left(s.query, 500) AS query
FROM pg_stat_statements s
JOIN pg_roles r ON r.oid = s.userid
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND NOT r.rolsuper
ORDER BY s.mean_exec_time DESC
LIMIT 10;
