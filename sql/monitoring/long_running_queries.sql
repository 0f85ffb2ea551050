-- Client queries (or open transactions) running for more than 5 minutes, longest first.
-- Reads pg_stat_activity (no table access). The query text of other users' sessions needs
-- pg_read_all_stats (bg_agents_monitor has it through pg_monitor). Another threshold: set
-- bgdb.long_query_seconds first (`SET bgdb.long_query_seconds = 60`, or PGOPTIONS); 0 lists
-- every running query (`bgdb troubleshoot` does that and flags its own threshold).
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
  AND now() - s.query_start >= make_interval(secs => coalesce(
        nullif(current_setting('bgdb.long_query_seconds', true), '')::double precision, 300))
ORDER BY s.query_start NULLS LAST;
