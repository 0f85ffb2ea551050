-- Counters for the latency histogram (see exporters/latency.py for what it covers).
-- pg_stat_statements(false) skips reading the query texts file, the costly part of the view.
-- Only the connected (agents) database, top-level statements, not the exporter's own role.
-- One JSON array of the rows (json_rows in exporters/queries.py): there may be thousands of
-- entries, and the pure-Python client pays per value fetched.
SELECT coalesce(json_agg(t), '[]') AS rows
FROM (
    SELECT
        s.userid,
        s.dbid,
        s.queryid,
        s.toplevel,
        s.calls,
        s.total_exec_time,
        (SELECT stats_reset FROM pg_stat_statements_info) AS stats_reset
    FROM pg_stat_statements(false) AS s
    WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
      AND s.toplevel
      AND s.queryid IS NOT NULL
) AS t
