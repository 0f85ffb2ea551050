-- Counters for the latency histogram (see exporters/latency.py for what it covers).
-- bg_agents_monitor.statements() (monitor_views.sql) is pg_stat_statements(false), which skips
-- reading the query texts file (the costly part of the view), with the query ids of every
-- role's statements and never a text.
-- Only the connected (agents) database, top-level statements, not the exporter's own role.
-- One JSON value (json_rows in exporters/queries.py, the "columns" form: the names once, then
-- one array per entry): there may be thousands of entries, and the pure-Python client pays per
-- value fetched.
-- The same text parses on PostgreSQL 13 (Debian 11), which has no pg_stat_statements_info
-- (the function reads 14's `toplevel` without to_jsonb, see monitor_views.sql):
--   * stats_reset is read from pg_stat_statements_info only where it exists (query_to_xml runs
--     that text only then), once per scrape (an initplan: every row carries the same value).
SELECT json_build_object(
    'columns', json_build_array(
        'userid', 'dbid', 'queryid', 'toplevel', 'calls', 'total_exec_time', 'stats_reset'),
    'rows', json_agg(json_build_array(
        s.userid, s.dbid, s.queryid, true, s.calls, s.total_exec_time,
        (SELECT (xpath('/row/stats_reset/text()',
                          query_to_xml('SELECT stats_reset FROM pg_stat_statements_info',
                                       false, true, '')))[1]::text::timestamptz
            WHERE to_regclass('pg_stat_statements_info') IS NOT NULL)))
) AS rows
FROM (
    SELECT s.userid, s.dbid, s.queryid, s.calls, s.total_exec_time
    FROM bg_agents_monitor.statements() AS s
    WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
      AND toplevel
      AND s.queryid IS NOT NULL
) AS s
