-- The server itself: one row. Version (to pick version-specific queries), connection limits,
-- where the data lives (the CLI measures free disk space there) and whether this is a standby.
-- data_directory needs pg_read_all_settings (bg_agents_monitor has it through pg_monitor).
SELECT current_setting('server_version_num')::integer AS server_version_num,
       current_setting('server_version') AS server_version,
       current_setting('max_connections')::integer AS max_connections,
       current_setting('superuser_reserved_connections')::integer
           AS superuser_reserved_connections,
       current_setting('data_directory') AS data_directory,
       pg_is_in_recovery() AS in_recovery,
       pg_postmaster_start_time() AS started_at,
       extract(epoch FROM now() - pg_postmaster_start_time())::double precision
           AS uptime_seconds;
