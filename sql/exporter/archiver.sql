-- WAL archiving (pg_stat_archiver). Timestamps are absent until the first archive/failure.
-- bgdb_pg_archiver_ready_wal_files: completed segments still waiting for archive_command
-- (.ready files, counted by a function of monitor_views.sql: listing the directory needs
-- pg_monitor), the backlog that grows when archiving fails or lags.
SELECT
    archived_count AS bgdb_pg_archiver_archived_total,
    failed_count AS bgdb_pg_archiver_failed_total,
    extract(epoch FROM last_archived_time) AS bgdb_pg_archiver_last_archived_timestamp_seconds,
    extract(epoch FROM now() - last_archived_time) AS bgdb_pg_archiver_last_archive_age_seconds,
    extract(epoch FROM last_failed_time) AS bgdb_pg_archiver_last_failed_timestamp_seconds,
    bg_agents_monitor.archive_ready_files() AS bgdb_pg_archiver_ready_wal_files
FROM pg_stat_archiver
