-- monitor_views.sql: what bg_agents_monitor (the exporter, dashboards) reads of the agents'
-- tables. Run by python -m bgdb.migrate after every migration pass, as a superuser, in the
-- target database; idempotent. bgdb.migrate drops these views before applying a migration (a
-- view would block a change of the columns it shows) and this file makes them again.
--
-- For each table and view of bg_agents_owner in public: a view of the same name in schema
-- bg_agents_monitor, owned by bg_agents_owner (NOLOGIN), with every column but the payloads:
-- json/jsonb/bytea columns (heartbeat metrics included: agents put what they like there) and
-- the free-text ones named below.
-- bg_agents_monitor has SELECT on these views only, not on the tables: ids, states, timestamps,
-- counts and costs, from which the exporter computes counts, ages and rates.
-- The default search_path ("$user", public) finds bg_agents_monitor.<table> first for that
-- role, so the exporter's and the operators' queries run unchanged.

DO $views$
DECLARE
    r    record;
    cols text;
BEGIN
    FOR r IN
        SELECT c.oid, c.relname
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND NOT c.relispartition
          AND c.relowner = 'bg_agents_owner'::regrole
          AND c.relname <> 'schema_migrations'
    LOOP
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute a
        WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid NOT IN ('json'::regtype, 'jsonb'::regtype, 'bytea'::regtype)
          AND a.attname NOT IN ('prompt', 'response', 'content', 'message', 'body',
                                'description', 'reasoning', 'notes', 'details', 'question',
                                'answer', 'error_message', 'stack_trace', 'text');
        CONTINUE WHEN cols IS NULL;
        -- Dropped first: CREATE OR REPLACE cannot take a column away (one transaction: the
        -- exporter never sees the view missing).
        EXECUTE format('DROP VIEW IF EXISTS bg_agents_monitor.%I', r.relname);
        EXECUTE format('CREATE VIEW bg_agents_monitor.%I AS SELECT %s FROM public.%I',
                       r.relname, cols, r.relname);
        EXECUTE format('ALTER VIEW bg_agents_monitor.%I OWNER TO bg_agents_owner', r.relname);
        EXECUTE format('GRANT SELECT ON bg_agents_monitor.%I TO bg_agents_monitor', r.relname);
    END LOOP;
END
$views$;

-- Server statistics for bg_agents_monitor, which is not in pg_monitor: without it PostgreSQL
-- hides other sessions' states and the statements' query ids, and with it (pg_read_all_stats)
-- the monitor would read every session's query text, literals and passwords of
-- ALTER ROLE ... PASSWORD included. These functions run as bg_agents_stats (NOLOGIN, pg_monitor)
-- and return only what the exporter publishes: states, wait types, timestamps, counts, sizes,
-- LSNs and query ids; never a query text, a client's payload or a setting's value.
-- Dropped and made again (a changed result type cannot be replaced), in this file's one
-- transaction. Only bg_agents_monitor may execute them.
DROP FUNCTION IF EXISTS bg_agents_monitor.activity();
CREATE FUNCTION bg_agents_monitor.activity()
RETURNS TABLE (pid integer, datname name, usename name, backend_type text, state text,
               wait_event_type text, backend_start timestamptz, xact_start timestamptz,
               query_start timestamptz, state_change timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pid, datname, usename, backend_type, state, wait_event_type, backend_start,
           xact_start, query_start, state_change
    FROM pg_catalog.pg_stat_activity
$$;

-- pg_stat_statements(false): the counters without reading the query texts file. PL/pgSQL, so
-- that the file applies where the extension is not (yet) created; `toplevel` is 14+ (on 13
-- every entry is top-level, pg_stat_statements.track = top).
DROP FUNCTION IF EXISTS bg_agents_monitor.statements();
CREATE FUNCTION bg_agents_monitor.statements()
RETURNS TABLE (userid oid, dbid oid, queryid bigint, toplevel boolean, calls bigint,
               total_exec_time double precision)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ext regnamespace := (SELECT extnamespace::regnamespace FROM pg_catalog.pg_extension
                         WHERE extname = 'pg_stat_statements');
BEGIN
    IF ext IS NULL THEN
        RAISE EXCEPTION 'pg_stat_statements is not installed in database %',
            current_database() USING ERRCODE = 'undefined_table';
    END IF;
    -- toplevel through a NATURAL LEFT JOIN with a one-row (toplevel = true): on 14+ the
    -- common column joins and is the entry's own; on 13 it is a cross join with that row.
    -- (to_jsonb(s) ->> 'toplevel' built a ~40-value object per entry: 6 ms per scrape at 400.)
    RETURN QUERY EXECUTE format(
        'SELECT s.userid, s.dbid, s.queryid, toplevel, s.calls, s.total_exec_time'
        ' FROM %s.pg_stat_statements(false) AS s'
        ' NATURAL LEFT JOIN (VALUES (true)) AS d (toplevel)', ext);
END
$$;

DROP FUNCTION IF EXISTS bg_agents_monitor.replication();
CREATE FUNCTION bg_agents_monitor.replication()
RETURNS TABLE (application_name text, client_addr inet, state text, replay_lsn pg_lsn,
               replay_lag interval, sync_state text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT application_name, client_addr, state, replay_lsn, replay_lag, sync_state
    FROM pg_catalog.pg_stat_replication
$$;

DROP FUNCTION IF EXISTS bg_agents_monitor.wal_receivers_streaming();
CREATE FUNCTION bg_agents_monitor.wal_receivers_streaming() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*) FROM pg_catalog.pg_stat_wal_receiver WHERE status = 'streaming' $$;

DROP FUNCTION IF EXISTS bg_agents_monitor.archive_ready_files();
CREATE FUNCTION bg_agents_monitor.archive_ready_files() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*) FROM pg_catalog.pg_ls_archive_statusdir() WHERE name LIKE '%.ready' $$;

-- pg_database_size needs CONNECT on each database (or pg_read_all_stats).
DROP FUNCTION IF EXISTS bg_agents_monitor.database_sizes();
CREATE FUNCTION bg_agents_monitor.database_sizes()
RETURNS TABLE (datname name, size_bytes bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.datname, pg_catalog.pg_database_size(d.oid)
    FROM pg_catalog.pg_database AS d
    WHERE d.datallowconn AND NOT d.datistemplate
$$;

DO $functions$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'bg_agents_monitor'::regnamespace
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO bg_agents_stats', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO bg_agents_monitor', f);
    END LOOP;
END
$functions$;
