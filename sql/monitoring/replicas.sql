-- Standbys streaming from this server (pg_stat_replication; none on a primary without replicas).
-- Lag in bytes of WAL not yet replayed on the standby, and in seconds as the standby reports it.
SELECT coalesce(nullif(r.application_name, ''), host(r.client_addr), 'local') AS replica,
       host(r.client_addr) AS client_addr,
       r.state,
       r.sync_state,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END, r.replay_lsn) AS replay_lag_bytes,
       extract(epoch FROM r.replay_lag)::double precision AS replay_lag_seconds,
       r.reply_time
FROM pg_stat_replication r
ORDER BY 1;
