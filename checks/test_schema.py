"""Security and performance items for the agents' schema on the primary."""

from __future__ import annotations

from bgdb.remote import Target

MIGRATIONS_DIR = "sql/migrations"


def test_schema_migrations_current(primary: Target) -> None:
    """Every migration in the repo is applied, none changed since"""
    from bgdb.migrate import DEFAULT_DIR, discover

    files = {m.version: m.checksum for m in discover(DEFAULT_DIR)}
    rows = primary.sql("SELECT version, checksum FROM schema_migrations ORDER BY version")
    applied = {int(v): c for v, c in rows}
    missing = sorted(set(files) - set(applied))
    changed = sorted(v for v in applied if v in files and files[v] != applied[v])
    assert not missing, f"migrations not applied: {missing}"
    assert not changed, f"applied migrations whose file changed since: {changed}"


def test_app_role_least_privilege(primary: Target) -> None:
    """Dedicated application role: no superuser, cannot create, drop or read pg_authid"""
    user = primary.app.user
    attrs = primary.sql(f"SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, "
                        f"rolconnlimit FROM pg_roles WHERE rolname = '{user}'")
    assert attrs, f"application role {user} does not exist"
    sup, createrole, createdb, bypass, limit = attrs[0]
    assert (sup, createrole, createdb, bypass) == ("f", "f", "f", "f"), \
        f"{user} has elevated attributes (super, createrole, createdb, bypassrls) = " \
        f"{(sup, createrole, createdb, bypass)}"
    assert int(limit) > 0, f"{user} has no connection limit (CIS 4.x)"
    can = primary.sql(
        f"SELECT has_schema_privilege('{user}', 'public', 'CREATE'), "
        f"has_database_privilege('{user}', current_database(), 'CREATE'), "
        f"has_table_privilege('{user}', 'pg_authid', 'SELECT'), "
        f"EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = 'public' AND pg_has_role('{user}', c.relowner, 'USAGE'))")[0]
    labels = ["CREATE on schema public", "CREATE on the database", "SELECT on pg_authid",
              "owns (can DROP/ALTER) tables"]
    granted = [label for label, v in zip(labels, can, strict=True) if v == "t"]
    assert not granted, f"{user} can: {', '.join(granted)}"


def test_public_schema_not_writable(primary: Target) -> None:
    """PUBLIC cannot create in schema public or connect to the database by default (CIS)"""
    create = primary.value("SELECT has_schema_privilege('public', 'public', 'CREATE')")
    assert create == "f", "PUBLIC can CREATE in schema public"
    acl = primary.value(f"SELECT coalesce(datacl::text, '') FROM pg_database "
                        f"WHERE datname = '{primary.app.database}'")
    assert acl and not any(part.startswith("=") for part in acl.strip("{}").split(",")), \
        f"PUBLIC has privileges on database {primary.app.database}: {acl or 'default ACL'}"


def test_foreign_keys_indexed(primary: Target) -> None:
    """Every foreign key column has an index that starts with it"""
    rows = primary.sql("""
        SELECT c.conrelid::regclass, a.attname FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f' AND c.conrelid::regclass::text NOT LIKE '%\\_p2%'
          AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid
                          AND i.indkey[0] = c.conkey[1])""")
    assert not rows, f"foreign keys without an index: {rows}"


def test_no_invalid_indexes(primary: Target) -> None:
    """No invalid indexes (left by a failed CREATE/REINDEX CONCURRENTLY)"""
    rows = primary.sql("SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid")
    assert not rows, f"invalid indexes: {rows}"


def test_searched_jsonb_has_gin(primary: Target) -> None:
    """GIN indexes on the JSONB columns agents search"""
    wanted = [("agents", "config"), ("agents", "metadata"), ("agent_heartbeats", "metrics"),
              ("system_events", "event_data"), ("help_requests", "context")]
    have = {(t, c) for t, c in primary.sql("""
        SELECT t.relname, a.attname FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
        WHERE am.amname = 'gin'""")}
    missing = [f"{t}.{c}" for t, c in wanted if (t, c) not in have]
    assert not missing, f"JSONB columns without a GIN index: {missing}"
