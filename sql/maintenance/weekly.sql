-- Weekly maintenance. Run in the agents database as a superuser, with psql in autocommit mode:
--     psql -X -v ON_ERROR_STOP=1 -d <db> -f sql/maintenance/weekly.sql
-- VACUUM cannot run inside a transaction block (no BEGIN, no psql -1, no function wrapper).
-- psql variables (the scheduled job passes the deploy's settings): retention_days (30),
-- premake_days (14).
\if :{?retention_days}
\else
    \set retention_days 30
\endif
\if :{?premake_days}
\else
    \set premake_days 14
\endif

-- Retention (30 days by default): drops the daily partitions older than that, deletes old
-- rows of the DEFAULT partitions in batches; one row per action.
SELECT * FROM bgdb_partition_retention(:retention_days);

-- Partitions ahead.
SELECT * FROM bgdb_partition_premake(:premake_days);

-- Plain VACUUM (never FULL): marks dead rows reusable and keeps the visibility map current for
-- index-only scans, without an exclusive lock.
VACUUM (ANALYZE);

-- Record the database size (trend of growth, kept with the other events).
INSERT INTO system_events (event_type, severity, source, event_data)
SELECT 'database_size',
       'INFO',
       'maintenance.weekly',
       jsonb_build_object('database_name', current_database(),
                          'database_size_bytes', pg_database_size(current_database()));
