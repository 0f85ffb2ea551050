-- Replication slots: an inactive slot keeps WAL from being removed and can fill the disk.
-- safe_wal_size is absent when max_slot_wal_keep_size is unlimited (-1).
SELECT
    slot_name AS slot,
    slot_type AS type,
    active::int AS bgdb_pg_replication_slot_active,
    pg_wal_lsn_diff(
        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
        restart_lsn
    ) AS bgdb_pg_replication_slot_retained_bytes,
    safe_wal_size AS bgdb_pg_replication_slot_safe_wal_size_bytes
FROM pg_replication_slots
