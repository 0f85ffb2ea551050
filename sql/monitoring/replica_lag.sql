-- This server as a standby (no row on a primary). The lag in seconds is 0 when everything
-- received has been replayed (an idle primary sends nothing, so the last replayed transaction
-- gets old without any lag); otherwise the age of the last replayed transaction.
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::double precision
       END AS replay_lag_seconds,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS replay_lag_bytes,
       pg_last_xact_replay_timestamp() AS last_replayed_at,
       (SELECT count(*) FROM pg_stat_wal_receiver w WHERE w.status = 'streaming') > 0
           AS streaming
WHERE pg_is_in_recovery();
