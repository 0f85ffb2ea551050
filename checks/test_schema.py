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
    """GIN indexes on the JSONB columns agents search by content (none on the hot time series)"""
    wanted = [("agents", "config"), ("agents", "metadata"), ("help_requests", "context"),
              ("agent_communications", "content")]
    have = {(t, c) for t, c in primary.sql("""
        SELECT t.relname, a.attname FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
        WHERE am.amname = 'gin'""")}
    missing = [f"{t}.{c}" for t, c in wanted if (t, c) not in have]
    assert not missing, f"JSONB columns without a GIN index: {missing}"


# The seed's tables (../shared/seed.txt), column: (type, seed says NOT NULL, seed has a DEFAULT).
# Types by family: VARCHAR(n) is served by text, SERIAL by our bigint identity.
_T, _I, _N, _J, _TS = "text", "integer", "numeric", "jsonb", "timestamptz"
_ID = {"id": (_I, True, True)}
SEED_COLUMNS: dict[str, dict[str, tuple[str, bool, bool]]] = {
    "agents": {"agent_id": (_T, True, False), "state": (_T, True, False),
               "started_at": (_TS, False, False), "stopped_at": (_TS, False, False),
               "config": (_J, False, False), "metadata": (_J, False, False),
               "created_at": (_TS, False, True), "updated_at": (_TS, False, True)},
    "agent_heartbeats": {**_ID, "agent_id": (_T, True, False), "timestamp": (_TS, True, False),
                         "state": (_T, False, False), "error_count": (_I, False, True),
                         "metrics": (_J, False, False), "created_at": (_TS, False, True)},
    "performance_metrics": {**_ID, "agent_id": (_T, True, False),
                            "metric_name": (_T, True, False), "value": (_N, False, False),
                            "unit": (_T, False, False), "timestamp": (_TS, False, True),
                            "metadata": (_J, False, False)},
    "system_state": {**_ID, "key": (_T, True, False), "value": (_J, False, False),
                     "updated_at": (_TS, False, True), "updated_by": (_T, False, False)},
    "system_events": {**_ID, "event_type": (_T, True, False), "event_data": (_J, False, False),
                      "agent_id": (_T, False, False), "timestamp": (_TS, False, True),
                      "severity": (_T, False, True)},
    "help_requests": {**_ID, "request_id": (_T, True, False), "user_id": (_T, True, False),
                      "content": (_T, True, False), "context": (_J, False, False),
                      "status": (_T, False, True), "priority": (_T, False, True),
                      "created_at": (_TS, False, True), "updated_at": (_TS, False, True)},
    "help_responses": {**_ID, "request_id": (_T, True, False), "response_id": (_T, True, False),
                       "content": (_T, True, False), "confidence_score": (_N, False, False),
                       "sources": (_J, False, False), "generated_at": (_TS, False, True),
                       "agent_id": (_T, False, False)},
    "agent_communications": {**_ID, "from_agent": (_T, True, False),
                             "to_agent": (_T, True, False), "message_type": (_T, True, False),
                             "content": (_J, False, False), "timestamp": (_TS, False, True),
                             "status": (_T, False, True)},
    "llm_conversations": {**_ID, "conversation_id": (_T, True, False),
                          "agent_id": (_T, False, False), "prompt": (_T, True, False),
                          "response": (_T, False, False), "model": (_T, False, False),
                          "tokens_used": (_I, False, False), "cost": (_N, False, False),
                          "timestamp": (_TS, False, True), "metadata": (_J, False, False)},
}
# The one deviation allowed (migration 0004): the partition key is in the primary key.
PARTITION_KEYS = {("agent_heartbeats", "timestamp"), ("performance_metrics", "timestamp"),
                  ("system_events", "timestamp")}
# The seed's foreign keys (a seed column referencing another table); any other on a seed column
# would reject rows the seed accepts.
SEED_FOREIGN_KEYS = {("agent_heartbeats", "agent_id", "agents"),
                     ("performance_metrics", "agent_id", "agents"),
                     ("help_responses", "request_id", "help_requests")}
_COMPATIBLE = {_T: {"text", "character varying"}, _I: {"integer", "bigint"},
               _N: {"numeric"}, _J: {"jsonb"}, _TS: {"timestamp with time zone"}}


def test_seed_schema(primary: Target) -> None:
    """Every column of the seed's schema, with a compatible type, its NULLs and defaults; no
    column or foreign key of ours rejects a row the seed's schema accepts"""
    tables = ", ".join(f"'{t}'" for t in SEED_COLUMNS)
    rows = primary.sql(f"""
        SELECT c.relname, a.attname, format_type(a.atttypid, NULL), a.attnotnull,
               a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ({tables})
          AND a.attnum > 0 AND NOT a.attisdropped""")
    have = {(t, c): (typ, notnull == "t", default == "t") for t, c, typ, notnull, default in rows}
    wrong = []
    for table, columns in SEED_COLUMNS.items():
        for column, (family, seed_not_null, seed_default) in columns.items():
            got = have.get((table, column))
            if got is None:
                wrong.append(f"{table}.{column}: missing")
                continue
            typ, not_null, default = got
            if typ not in _COMPATIBLE[family]:
                wrong.append(f"{table}.{column}: {typ} (the seed's is {family})")
            if not_null and not seed_not_null and (table, column) not in PARTITION_KEYS:
                wrong.append(f"{table}.{column}: NOT NULL (the seed allows NULL)")
            if seed_default and not default:
                wrong.append(f"{table}.{column}: no default (the seed has one)")
    for (table, column), (_, not_null, default) in sorted(have.items()):
        if column not in SEED_COLUMNS[table] and not_null and not default:
            wrong.append(f"{table}.{column}: ours, NOT NULL without a default (seed inserts "
                         "do not name it)")
    fks = primary.sql(f"""
        SELECT c.conrelid::regclass, a.attname, c.confrelid::regclass FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f' AND c.conrelid::regclass::text IN ({tables})""")
    for table, column, ref in fks:
        if column in SEED_COLUMNS[table] and (table, column, ref) not in SEED_FOREIGN_KEYS:
            wrong.append(f"{table}.{column}: foreign key to {ref} (the seed has none)")
    assert not wrong, f"not the seed's schema: {'; '.join(wrong)}"
