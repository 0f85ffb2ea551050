-- Counters for the latency histogram (see exporters/latency.py for what it covers).
-- pg_stat_statements(false) skips reading the query texts file, the costly part of the view.
-- Only the connected (agents) database, top-level statements, not the exporter's own role.
-- One JSON array of the rows (json_rows in exporters/queries.py): there may be thousands of
-- entries, and the pure-Python client pays per value fetched.
-- The same text parses on PostgreSQL 13 (Debian 11): `toplevel` and pg_stat_statements_info
-- are 14+, so the first is read through to_jsonb (absent: every entry is top-level, as with
-- the default pg_stat_statements.track = top) and the second only where it exists.
SELECT coalesce(json_agg(t), '[]') AS rows
FROM (
    SELECT
        s.userid,
        s.dbid,
        s.queryid,
        s.toplevel,
        s.calls,
        s.total_exec_time,
        (SELECT (xpath('/row/stats_reset/text()',
                       query_to_xml('SELECT stats_reset FROM pg_stat_statements_info',
                                    false, true, '')))[1]::text::timestamptz
         WHERE to_regclass('pg_stat_statements_info') IS NOT NULL) AS stats_reset
    FROM (
        SELECT s.userid, s.dbid, s.queryid, s.calls, s.total_exec_time,
               coalesce((to_jsonb(s) ->> 'toplevel')::boolean, true) AS toplevel
        FROM pg_stat_statements(false) AS s
    ) AS s
    WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
      AND s.toplevel
      AND s.queryid IS NOT NULL
) AS t
