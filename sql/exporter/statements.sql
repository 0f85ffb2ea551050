-- Counters for the latency histogram (see exporters/latency.py for what it covers).
-- pg_stat_statements(false) skips reading the query texts file, the costly part of the view.
-- Only the connected (agents) database, top-level statements, not the exporter's own role.
-- One JSON value (json_rows in exporters/queries.py, the "columns" form: the names once, then
-- one array per entry): there may be thousands of entries, and the pure-Python client pays per
-- value fetched.
-- The same text parses on PostgreSQL 13 (Debian 11), whose pg_stat_statements has no
-- `toplevel` column and no pg_stat_statements_info:
--   * NATURAL LEFT JOIN with a one-row (toplevel = true): on 14+ the common column joins and
--     the merged `toplevel` is the entry's own; on 13 there is no common column, the join is a
--     cross join with that one row, and every entry counts as top-level (as it is with the
--     default pg_stat_statements.track = top). Reading the column through to_jsonb(s), as this
--     query did before, built a JSON object of ~40 values per entry: ~15 us each, 6 ms per
--     scrape at 400 entries, more than all the other queries of the batch together.
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
    FROM pg_stat_statements(false) AS s
    NATURAL LEFT JOIN (VALUES (true)) AS d (toplevel)
    WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
      AND toplevel
      AND s.queryid IS NOT NULL
) AS s
