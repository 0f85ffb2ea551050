-- Lock contention among client backends (the exporter's own session left out).
-- bgdb_pg_lock_wait_ratio = backends waiting on a heavyweight lock / backends not idle
-- (0 when none is busy). pg_blocking_pids() runs only for the waiting backends.
WITH busy AS (
    SELECT pid, wait_event_type
    FROM bg_agents_monitor.activity()  -- pg_stat_activity without query texts
    WHERE backend_type = 'client backend'
      AND state IS DISTINCT FROM 'idle'
      AND pid <> pg_backend_pid()
),
waiting AS (
    SELECT pid, pg_blocking_pids(pid) AS blockers
    FROM busy
    WHERE wait_event_type = 'Lock'
)
SELECT
    (SELECT count(*) FROM busy) AS bgdb_pg_busy_backends,
    (SELECT count(*) FROM waiting) AS bgdb_pg_lock_waiting_backends,
    coalesce(
        (SELECT count(*) FROM waiting)::float8 / nullif((SELECT count(*) FROM busy), 0), 0
    ) AS bgdb_pg_lock_wait_ratio,
    (SELECT count(*) FROM waiting WHERE cardinality(blockers) > 0) AS bgdb_pg_blocked_queries,
    (SELECT count(DISTINCT b) FROM waiting, unnest(blockers) AS b) AS bgdb_pg_blocking_backends
