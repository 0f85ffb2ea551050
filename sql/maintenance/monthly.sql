-- Monthly maintenance. Run in the agents database as a superuser, with psql in autocommit mode:
--     psql -X -v ON_ERROR_STOP=1 -d <db> -f sql/maintenance/monthly.sql
--
-- The seed's VACUUM FULL and REINDEX DATABASE hold ACCESS EXCLUSIVE locks for as long as they
-- rewrite: every agent's insert and read waits. Instead, only the indexes that need it are
-- rebuilt, with REINDEX INDEX CONCURRENTLY (builds a new index beside the old one, then swaps;
-- writes continue). Table bloat is handled by autovacuum and the weekly VACUUM, and the large
-- tables shed their old data by dropping partitions, which leaves nothing to compact.
--
-- REINDEX CONCURRENTLY cannot run inside a transaction block or a function, so the query below
-- only produces the statements, one per row, and psql's \gexec runs each of them on its own.
-- (Another runner: execute the SELECT, then each returned statement in autocommit mode.)
--
-- Rebuilt:
--   * invalid indexes (a failed CREATE INDEX CONCURRENTLY), except leftovers of a failed
--     REINDEX CONCURRENTLY (*_ccnew, *_ccold), which are dropped concurrently instead;
--   * B-tree indexes of at least 10 MB whose estimated bloat is over 30 %: the estimate compares
--     the index size with the size its rows would take packed at the default fillfactor (90 %),
--     from reltuples and the columns' average width in pg_stats (pgstattuple not needed).
WITH btree AS (
    SELECT i.indexrelid,
           i.indisvalid,
           ic.relname AS index_name,
           pg_relation_size(i.indexrelid) AS index_bytes,
           greatest(ic.reltuples, 0) AS tuples,
           -- index tuple: 8-byte header + 4-byte line pointer + key columns, 8-byte aligned.
           12 + coalesce((SELECT sum(coalesce(st.avg_width, 8))
                          FROM unnest(i.indkey) k(attnum)
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                          LEFT JOIN pg_stats st ON st.schemaname = n.nspname
                                               AND st.tablename = tc.relname
                                               AND st.attname = a.attname), 8) AS tuple_bytes
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class tc ON tc.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = ic.relnamespace
    WHERE n.nspname = 'public'
      AND ic.relkind = 'i'          -- leaf indexes; partitioned parents have no storage
),
estimate AS (
    SELECT b.*,
           -- usable bytes per 8 kB page at fillfactor 90: (8192 - 24 header - 16 special) * 0.9
           ceil(b.tuples * ceil(b.tuple_bytes / 8.0) * 8 / (8152 * 0.9)) * 8192 AS ideal_bytes
    FROM btree b
)
SELECT CASE
           WHEN NOT e.indisvalid AND e.index_name ~ '_cc(new|old)[0-9]*$'
               THEN format('DROP INDEX CONCURRENTLY IF EXISTS public.%I', e.index_name)
           ELSE format('REINDEX INDEX CONCURRENTLY public.%I', e.index_name)
       END AS statement
FROM estimate e
JOIN pg_class ic ON ic.oid = e.indexrelid
JOIN pg_am am ON am.oid = ic.relam
WHERE NOT e.indisvalid
   OR (am.amname = 'btree'
       AND e.index_bytes >= 10 * 1024 * 1024
       AND e.index_bytes > 0
       AND 1 - e.ideal_bytes / e.index_bytes > 0.30)
ORDER BY e.index_bytes DESC
\gexec
