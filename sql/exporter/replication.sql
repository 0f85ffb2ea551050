-- Each standby connected to this server (pg_stat_replication), labelled by its
-- application_name (the replica's cluster/host name; bounded by max_wal_senders).
SELECT
    coalesce(nullif(application_name, ''), coalesce(host(client_addr), 'local')) AS replica,
    (state = 'streaming')::int AS bgdb_pg_replication_streaming,
    -- a commit here waits for this standby (synchronous_standby_names: Patroni's sync standby)
    (sync_state IN ('sync', 'quorum'))::int AS bgdb_pg_replication_sync,
    pg_wal_lsn_diff(
        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
        replay_lsn
    ) AS bgdb_pg_replication_lag_bytes,
    coalesce(extract(epoch FROM replay_lag), 0) AS bgdb_pg_replication_replay_lag_seconds
FROM bg_agents_monitor.replication()  -- pg_stat_replication's columns read here
