-- slowest.sql for PostgreSQL 12, whose pg_stat_statements has mean_time/max_time/total_time
-- (renamed *_exec_time in 13). Same columns, same order.
SELECT s.queryid,
       r.rolname AS user_name,
       s.calls,
       s.mean_time AS mean_ms,
       s.max_time AS max_ms,
       s.total_time AS total_ms,
       s.rows,
       100.0 * s.shared_blks_hit / nullif(s.shared_blks_hit + s.shared_blks_read, 0)
           AS cache_hit_percent,
       left(s.query, 500) AS query
FROM pg_stat_statements s
JOIN pg_roles r ON r.oid = s.userid
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND NOT r.rolsuper
ORDER BY s.mean_time DESC
LIMIT 10;
