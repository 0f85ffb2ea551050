-- Long-running work among client backends (the exporter's own session left out).
-- A query counts as long-running as in the seed: not idle and started more than
-- long_query_seconds ago (idle-in-transaction sessions included: they hold locks and snapshots).
SELECT
    count(*) FILTER (
        WHERE state <> 'idle'
          AND extract(epoch FROM now() - query_start) > %(long_query_seconds)s
    ) AS bgdb_pg_long_running_queries,
    coalesce(
        max(extract(epoch FROM now() - query_start)) FILTER (WHERE state = 'active'), 0
    ) AS bgdb_pg_longest_query_seconds,
    coalesce(max(extract(epoch FROM now() - xact_start)), 0) AS bgdb_pg_longest_transaction_seconds,
    count(*) FILTER (WHERE state LIKE 'idle in transaction%%') AS bgdb_pg_idle_in_transaction
FROM bg_agents_monitor.activity()  -- pg_stat_activity without query texts (monitor_views.sql)
WHERE backend_type = 'client backend'
  AND pid <> pg_backend_pid()
