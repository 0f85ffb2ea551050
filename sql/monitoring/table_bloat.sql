-- Table bloat, estimated by the dead-tuple ratio from the statistics collector (cheap: no table
-- is read; pgstattuple would read every page). A high ratio with an old last_autovacuum means
-- autovacuum cannot keep up or is blocked (long transactions, see long_running_queries.sql).
SELECT s.schemaname AS schema_name,
       s.relname AS table_name,
       s.n_live_tup AS live_tuples,
       s.n_dead_tup AS dead_tuples,
       (s.n_dead_tup::double precision / nullif(s.n_live_tup + s.n_dead_tup, 0))
           AS dead_tuple_ratio,
       pg_total_relation_size(s.relid) AS total_bytes,
       s.last_vacuum,
       s.last_autovacuum,
       s.last_analyze,
       s.last_autoanalyze
FROM pg_stat_user_tables s
ORDER BY s.n_dead_tup DESC, s.relname
LIMIT 20;
