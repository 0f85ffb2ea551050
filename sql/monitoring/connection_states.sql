-- Client connections by role and state, all databases. Every client backend holds one of
-- max_connections' slots (server_info.sql); 'idle in transaction' ones hold locks and snapshots
-- too. Background workers, autovacuum and WAL senders have their own slots: not counted.
SELECT coalesce(s.usename, '') AS user_name,
       coalesce(s.state, 'unknown') AS state,
       count(*) AS connections,
       max(extract(epoch FROM now() - s.state_change))::double precision
           AS longest_in_state_seconds
FROM pg_stat_activity s
WHERE s.backend_type = 'client backend'
GROUP BY 1, 2
ORDER BY 3 DESC, 1, 2;
