-- Every client query running now (or transaction open, not idle), longest first, all databases.
-- Like long_running_queries.sql without its fixed 5 minutes: the caller applies its own
-- threshold (`bgdb troubleshoot --long-query-seconds`, 600 by default). pg_stat_activity only.
SELECT s.pid,
       s.usename AS user_name,
       s.datname AS database_name,
       s.application_name,
       s.client_addr,
       s.state,
       s.wait_event_type,
       s.wait_event,
       s.query_start,
       extract(epoch FROM now() - s.query_start)::double precision AS duration_seconds,
       extract(epoch FROM now() - s.xact_start)::double precision AS transaction_seconds,
       left(s.query, 2000) AS query
FROM pg_stat_activity s
WHERE s.backend_type = 'client backend'
  AND s.state <> 'idle'
  AND s.pid <> pg_backend_pid()
ORDER BY s.query_start NULLS LAST
LIMIT 50;
