-- Counters for the latency histogram (see exporters/latency.py for what it covers).
-- bg_agents_monitor.statements() (monitor_views.sql) is pg_stat_statements(false), which skips
-- reading the query texts file (the costly part of the view), with the query ids of every
-- role's statements and never a text.
-- Only the connected (agents) database, top-level statements, not the exporter's own role.
-- One JSON array of the rows (json_rows in exporters/queries.py): there may be thousands of
-- entries, and the pure-Python client pays per value fetched.
-- The same text parses on PostgreSQL 13 (Debian 11): pg_stat_statements_info is 14+, so it is
-- read only where it exists (the function reads 14's `toplevel` the same way).
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
    FROM bg_agents_monitor.statements() AS s
    WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
      AND s.toplevel
      AND s.queryid IS NOT NULL
) AS t
