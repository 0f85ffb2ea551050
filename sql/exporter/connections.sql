-- Client backends by state. Every client backend holds one of max_connections' slots, the
-- exporter's own included; background workers, autovacuum and WAL senders have their own slots.
SELECT
    coalesce(state, 'unknown') AS state,
    count(*) AS bgdb_pg_connections
FROM bg_agents_monitor.activity()  -- pg_stat_activity without query texts (monitor_views.sql)
WHERE backend_type = 'client backend'
GROUP BY 1
