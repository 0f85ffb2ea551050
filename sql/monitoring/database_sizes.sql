-- Size of every database that accepts connections, largest first (catalog + size function;
-- pg_database_size of another database needs CONNECT or pg_read_all_stats).
SELECT d.datname AS database_name,
       pg_database_size(d.oid) AS size_bytes
FROM pg_database d
WHERE d.datallowconn
ORDER BY 2 DESC, 1;
