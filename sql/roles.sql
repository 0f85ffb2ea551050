-- roles.sql: least-privilege roles for the agents database. Idempotent; run before every
-- migration pass, in the target database, by a superuser (python -m bgdb.migrate does this).
--
--   bg_agents_owner     NOLOGIN; owns every schema object. Migrations run as it (SET ROLE), so
--                       nobody logs in with the power to drop tables.
--   <app user>          the agents' login (the seed's POSTGRESQL_USER, default bg_agents_user):
--                       CONNECT, USAGE on public, SELECT/INSERT/UPDATE/DELETE on the tables and
--                       USAGE/SELECT on the sequences - no TRUNCATE, DDL, or temporary tables.
--   bg_agents_readonly  dashboards, read replicas: SELECT only.
--   bg_agents_monitor   the exporter: the views and functions of schema bg_agents_monitor
--                       (sql/monitor_views.sql) and nothing else: the agents' tables without
--                       their payload columns, server statistics without query texts. Not a
--                       member of bg_agents_readonly nor of pg_monitor (pg_read_all_stats would
--                       show it every session's query, literals and passwords included).
--   bg_agents_stats     NOLOGIN, pg_monitor: owns the SECURITY DEFINER functions of schema
--                       bg_agents_monitor, which return the monitor the statistics it publishes.
--   bg_agents_ops       the humans' troubleshooting login (the seed's troubleshooting queries,
--                       `bgdb connect --role ops`): pg_monitor, so it sees every session's query
--                       text and pg_stat_statements' texts; no table privileges (no payloads).
--
-- Table privileges come from ALTER DEFAULT PRIVILEGES FOR ROLE bg_agents_owner, so every table a
-- later migration creates is covered without touching this file; existing tables are granted
-- again below so that a renamed app user converges too.
-- Passwords are not set here (the deploy sets them, SCRAM, from the secrets directory).
--
-- Parameters are custom settings, not text substitution, so no name is ever spliced into SQL
-- unquoted (every identifier below goes through format('%I')):
--   bgdb.app_user               default bg_agents_user
--   bgdb.app_connection_limit   enforced when set; a new app role gets 100 when unset
--   bgdb.connect_roles          optional, comma-separated: more roles granted CONNECT
-- (bg_agents_readonly, bg_agents_monitor and bg_agents_ops are created with a limit of 20; an
-- existing role's limit is left to the deploy.)
-- e.g.  PGOPTIONS='-c bgdb.app_user=agents' psql -v ON_ERROR_STOP=1 -d agents -f sql/roles.sql
-- Changes are reported as NOTICEs starting with "bgdb:" (the migration runner prints them).

DO $roles$
DECLARE
    app       text := coalesce(nullif(current_setting('bgdb.app_user', true), ''),
                               'bg_agents_user');
    -- NULL: leave an existing role's limit alone (the deploy may manage it).
    app_limit integer := nullif(current_setting('bgdb.app_connection_limit', true), '')::integer;
    db        text := current_database();
    r         record;
    attrs     text;
BEGIN
    -- want_limit: enforced on existing roles when not NULL; create_limit: for a new role.
    FOR r IN
        SELECT * FROM (VALUES ('bg_agents_owner', false, -1, -1),
                              (app, true, app_limit, coalesce(app_limit, 100)),
                              ('bg_agents_readonly', true, NULL, 20),
                              ('bg_agents_monitor', true, NULL, 20),
                              ('bg_agents_stats', false, -1, -1),
                              ('bg_agents_ops', true, NULL, 20))
                      AS v (name, login, want_limit, create_limit)
    LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name AND rolsuper) THEN
            RAISE EXCEPTION 'bgdb: refusing to manage superuser role % as an agents role', r.name;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I %s NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
                               ' NOBYPASSRLS INHERIT CONNECTION LIMIT %s',
                               r.name, CASE WHEN r.login THEN 'LOGIN' ELSE 'NOLOGIN' END,
                               r.create_limit);
                RAISE NOTICE 'bgdb: created role %', r.name;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- roles are cluster-wide: another database's runner created it just now
            END;
        ELSIF EXISTS (SELECT 1 FROM pg_roles
                      WHERE rolname = r.name
                        AND (rolcanlogin <> r.login
                             OR rolconnlimit <> coalesce(r.want_limit, rolconnlimit)
                             OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls))
        THEN
            attrs := concat_ws(' ', CASE WHEN r.login THEN 'LOGIN' ELSE 'NOLOGIN' END,
                               'NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
                               'CONNECTION LIMIT ' || r.want_limit);
            EXECUTE format('ALTER ROLE %I %s', r.name, attrs);
            RAISE NOTICE 'bgdb: altered role %: %', r.name, attrs;
        END IF;
    END LOOP;

    -- Role memberships (checked first: a repeated GRANT only adds a notice, but stays quiet).
    FOR r IN SELECT unnest(ARRAY['bg_agents_stats', 'bg_agents_ops']) AS name LOOP
        IF NOT pg_has_role(r.name, 'pg_monitor', 'MEMBER') THEN
            EXECUTE format('GRANT pg_monitor TO %I', r.name);
            RAISE NOTICE 'bgdb: granted pg_monitor to %', r.name;
        END IF;
    END LOOP;
    -- The monitor reads no payload and no query text: the views and bg_agents_stats' functions
    -- of sql/monitor_views.sql, not readonly's tables nor pg_monitor's statistics.
    FOR r IN SELECT unnest(ARRAY['bg_agents_readonly', 'pg_monitor']) AS name LOOP
        IF EXISTS (SELECT 1 FROM pg_auth_members
                   WHERE roleid = r.name::regrole AND member = 'bg_agents_monitor'::regrole) THEN
            EXECUTE format('REVOKE %I FROM bg_agents_monitor', r.name);
            RAISE NOTICE 'bgdb: revoked % from bg_agents_monitor', r.name;
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'bg_agents_monitor') THEN
        CREATE SCHEMA bg_agents_monitor AUTHORIZATION bg_agents_owner;
        RAISE NOTICE 'bgdb: created schema bg_agents_monitor';
    END IF;
    GRANT USAGE ON SCHEMA bg_agents_monitor TO bg_agents_monitor;

    -- Database: nobody but our roles (and superusers) may connect or create temporary tables.
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', db);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I, bg_agents_readonly, bg_agents_monitor,'
                   ' bg_agents_ops', db, app);
    -- Other roles that must connect (e.g. PgBouncer's auth_user, which runs its auth_query in
    -- this database): existing roles named in bgdb.connect_roles (comma-separated).
    FOR r IN
        SELECT rolname FROM pg_roles
        WHERE rolname = ANY (string_to_array(current_setting('bgdb.connect_roles', true), ','))
    LOOP
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', db, r.rolname);
    END LOOP;
    -- REFRESH MATERIALIZED VIEW CONCURRENTLY runs as the view's owner and needs a temp table.
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO bg_agents_owner', db);

    -- Schema: only the owner creates objects in public.
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    GRANT USAGE, CREATE ON SCHEMA public TO bg_agents_owner;
    -- bg_agents_ops: pg_stat_statements' view is there; bg_agents_stats: its function.
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I, bg_agents_readonly, bg_agents_monitor,'
                   ' bg_agents_ops, bg_agents_stats', app);

    -- Future objects of the owner (every later migration).
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE bg_agents_owner IN SCHEMA public'
                   ' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', app);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE bg_agents_owner IN SCHEMA public'
                   ' GRANT USAGE, SELECT ON SEQUENCES TO %I', app);
    ALTER DEFAULT PRIVILEGES FOR ROLE bg_agents_owner IN SCHEMA public
        GRANT SELECT ON TABLES TO bg_agents_readonly;
    -- Functions the owner creates are not callable by everyone (the partition functions drop
    -- data); trigger functions still fire, EXECUTE is only checked when creating a trigger.
    ALTER DEFAULT PRIVILEGES FOR ROLE bg_agents_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

    -- Existing objects of the owner: the same grants (the migration history table excepted: the
    -- application must not rewrite which migrations ran).
    FOR r IN
        SELECT c.oid::regclass AS rel, c.relkind
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relowner = 'bg_agents_owner'::regrole
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND c.relname <> 'schema_migrations'
    LOOP
        IF r.relkind = 'S' THEN
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', r.rel, app);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO %I', r.rel, app);
            EXECUTE format('GRANT SELECT ON TABLE %s TO bg_agents_readonly', r.rel);
        END IF;
    END LOOP;
END
$roles$;
