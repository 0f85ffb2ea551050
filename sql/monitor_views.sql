-- monitor_views.sql: what bg_agents_monitor (the exporter, dashboards) reads of the agents'
-- tables. Run by python -m bgdb.migrate after every migration pass, as a superuser, in the
-- target database; idempotent. bgdb.migrate drops these views before applying a migration (a
-- view would block a change of the columns it shows) and this file makes them again.
--
-- For each table and view of bg_agents_owner in public: a view of the same name in schema
-- bg_agents_monitor, owned by bg_agents_owner (NOLOGIN), with every column but the payloads:
-- json/jsonb/bytea columns (but heartbeat metrics) and the free-text ones named below.
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
          -- metrics: a heartbeat's numeric telemetry (cpu, memory), what monitoring is for.
          AND (a.atttypid NOT IN ('json'::regtype, 'jsonb'::regtype, 'bytea'::regtype)
               OR a.attname = 'metrics')
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
