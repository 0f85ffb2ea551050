-- pgbouncer_auth.sql: PgBouncer's password lookup (auth_query), run by a superuser in every
-- database PgBouncer serves. Idempotent; the deploy runs it only when the fact says the objects
-- are missing or differ (it then stamps the function's comment with this file's checksum).
--
-- PgBouncer logs in as the `pgbouncer` role (peer over the local socket: no password stored on
-- the host) and calls pgbouncer.user_search(name) to fetch a client's SCRAM verifier. The function
-- runs as its owner (postgres) because only a superuser may read pg_shadow; nobody but pgbouncer
-- may execute it. Superusers and expired roles are never returned: they cannot log in through
-- PgBouncer.
CREATE SCHEMA IF NOT EXISTS pgbouncer AUTHORIZATION postgres;
ALTER SCHEMA pgbouncer OWNER TO postgres;
REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer;

CREATE OR REPLACE FUNCTION pgbouncer.user_search(p_usename text)
RETURNS TABLE (usename name, passwd text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.usename, s.passwd
    FROM pg_catalog.pg_shadow s
    WHERE s.usename = p_usename
      AND NOT s.usesuper
      AND (s.valuntil IS NULL OR s.valuntil > now())
$$;
ALTER FUNCTION pgbouncer.user_search(text) OWNER TO postgres;
REVOKE ALL ON FUNCTION pgbouncer.user_search(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.user_search(text) TO pgbouncer;

-- The app database revokes CONNECT from PUBLIC (sql/roles.sql); the auth_query runs in it.
DO $grant$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO pgbouncer', current_database());
END
$grant$;
