-- Size on disk of each database (templates and databases that refuse connections left out).
-- pg_database_size walks every file of the database, so this runs at most every 300 s
-- (min_interval_seconds in exporters/queries.py); the counters of databases.sql run every scrape.
-- Through a function of monitor_views.sql: pg_database_size needs CONNECT on each database.
SELECT datname, size_bytes AS bgdb_pg_database_size_bytes
FROM bg_agents_monitor.database_sizes()
