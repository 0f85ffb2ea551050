-- Daily maintenance. Run in the agents database as a superuser (or the owner role), one
-- statement per transaction:  psql -X -v ON_ERROR_STOP=1 -d <db> -f sql/maintenance/daily.sql
-- Nothing here takes a lock that blocks the agents' reads or writes.
-- psql variables (the scheduled job passes the deploy's settings): premake_days (14),
-- long_query_seconds (300, the seed's 5 minutes).
\if :{?premake_days}
\else
    \set premake_days 14
\endif
\if :{?long_query_seconds}
\else
    \set long_query_seconds 300
\endif

-- Fresh planner statistics (ANALYZE only samples; SHARE UPDATE EXCLUSIVE lock, like autovacuum).
ANALYZE;

-- Readers of the view are not blocked during the refresh (needs its unique index).
REFRESH MATERIALIZED VIEW CONCURRENTLY agent_health_summary;

-- Queries running longer than long_query_seconds (5 minutes) are recorded as WARNING events
-- (one row each), so they stay visible after the session is gone.
INSERT INTO system_events (event_type, severity, source, event_data)
SELECT 'long_running_query',
       'WARNING',
       'maintenance.daily',
       jsonb_build_object(
           'pid', s.pid,
           'user_name', s.usename,
           'database_name', s.datname,
           'application_name', s.application_name,
           'client_addr', host(s.client_addr),
           'state', s.state,
           'query_start', s.query_start,
           'duration_seconds', round(extract(epoch FROM now() - s.query_start)),
           'query', left(s.query, 2000))
FROM pg_stat_activity s
WHERE s.backend_type = 'client backend'
  AND s.state <> 'idle'
  AND s.pid <> pg_backend_pid()
  AND now() - s.query_start > make_interval(secs => :long_query_seconds);

-- Keep two weeks of partitions ahead (the weekly job does it too; daily means one failed run
-- never leaves the agents without a partition - rows would still land in DEFAULT).
SELECT * FROM bgdb_partition_premake(:premake_days);
