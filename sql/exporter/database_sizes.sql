-- Size on disk of each database (templates and databases that refuse connections left out).
-- pg_database_size walks every file of the database, so this runs at most every 300 s
-- (min_interval_seconds in exporters/queries.py); the counters of databases.sql run every scrape.
SELECT d.datname, pg_database_size(d.oid) AS bgdb_pg_database_size_bytes
FROM pg_database AS d
WHERE d.datallowconn AND NOT d.datistemplate
