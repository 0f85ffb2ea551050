-- This server as a replica (no row on a primary). Lag in seconds is 0 when everything received
-- has been replayed (an idle primary sends nothing, so the last replay time gets old without
-- any lag); otherwise the age of the last replayed transaction.
SELECT
    CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
         ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
    END AS bgdb_pg_replica_lag_seconds,
    pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
        AS bgdb_pg_replica_replay_lag_bytes,
    bg_agents_monitor.wal_receivers_streaming() AS bgdb_pg_replica_streaming
WHERE pg_is_in_recovery()
