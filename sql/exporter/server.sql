-- The availability probe, run first in every scrape: when it answers, bgdb_up is 1.
-- Server-wide facts the alert and recording rules divide by or filter on.
SELECT
    pg_is_in_recovery()::int AS bgdb_pg_in_recovery,
    extract(epoch FROM pg_postmaster_start_time()) AS bgdb_pg_postmaster_start_time_seconds,
    current_setting('server_version_num')::int AS bgdb_pg_server_version_num,
    current_setting('max_connections')::int AS bgdb_pg_max_connections,
    current_setting('superuser_reserved_connections')::int
        AS bgdb_pg_superuser_reserved_connections,
    (current_setting('archive_mode') <> 'off')::int AS bgdb_pg_archive_mode
