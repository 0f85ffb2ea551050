"""The PostgreSQL side: where to connect, schema and privilege checks, the migration ledger.

The ledger lives in its own schema, `bgdb_sqlite_migration`, owned by the role that runs the
migration (a superuser or the schema owner; the agents' role has no access to it):

    sources  one row per migrated SQLite file (`source_key`, by default its absolute path):
             the options its conversions depend on (the mapping, the zone of zone-less times),
             and the time that stands in for missing created_at/updated_at values.
    tables   per source and target table: the last SQLite rowid migrated, rows copied and
             rejected, the range of ids written. Updated in the same transaction as each batch,
             so a run that stops anywhere resumes exactly after its last committed batch.
    issues   what the conversion had to say, per row: invalid JSON kept as a string,
             unconvertible values, rejected rows (with the whole SQLite row), placeholder agents.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bgdb.sqlite_migration import MigrationError, envfile
from bgdb.sqlite_migration.convert import Issue
from bgdb.sqlite_migration.mapping import ORDER

Connection = psycopg.Connection[Any]
SCHEMA = "bgdb_sqlite_migration"
# pg_try_advisory_lock(LOCK_NS, hashtext(source_key)): one migration of a source at a time.
LOCK_NS = 0x62676462  # "bgdb"
ENV_KEYS = ("POSTGRESQL_HOST", "POSTGRESQL_PORT", "POSTGRESQL_DATABASE", "POSTGRESQL_USER",
            "POSTGRESQL_PASSWORD", "POSTGRESQL_SSL_MODE", "POSTGRESQL_SSL_ROOT_CERT",
            "POSTGRESQL_TIMEOUT")

LEDGER_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;
CREATE TABLE IF NOT EXISTS {SCHEMA}.sources (
    source_key     text PRIMARY KEY,
    source_path    text NOT NULL,
    options        jsonb NOT NULL,
    migration_time timestamptz NOT NULL,
    first_run_at   timestamptz NOT NULL DEFAULT now(),
    last_run_at    timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.tables (
    source_key    text NOT NULL REFERENCES {SCHEMA}.sources ON DELETE CASCADE,
    target_table  text NOT NULL,
    source_table  text NOT NULL,
    last_rowid    bigint NOT NULL,
    rows_copied   bigint NOT NULL DEFAULT 0,
    rows_rejected bigint NOT NULL DEFAULT 0,
    min_id        bigint,
    max_id        bigint,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (source_key, target_table)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.issues (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_key   text NOT NULL REFERENCES {SCHEMA}.sources ON DELETE CASCADE,
    target_table text NOT NULL,
    source_rowid bigint,
    kind         text NOT NULL,
    column_name  text,
    detail       text NOT NULL,
    raw          text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS issues_source_table_kind_idx
    ON {SCHEMA}.issues (source_key, target_table, kind);
"""


class TargetError(MigrationError):
    """The target is unreachable, lacks the schema, or the role lacks a privilege."""


# ------------------------------------------------------------------------------------------------
# Where to connect


def env_settings(env_file: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """POSTGRESQL_* from the env file (if any), overridden by the environment."""
    values = {k: v for k, v in envfile.read(env_file).items() if k in ENV_KEYS} if env_file \
        else {}
    env = os.environ if environ is None else environ
    values.update({k: env[k] for k in ENV_KEYS if env.get(k)})
    return values


def dsn_from_settings(values: Mapping[str, str]) -> str:
    params: dict[str, Any] = {}
    for key, param in (("POSTGRESQL_HOST", "host"), ("POSTGRESQL_PORT", "port"),
                       ("POSTGRESQL_DATABASE", "dbname"), ("POSTGRESQL_USER", "user"),
                       ("POSTGRESQL_PASSWORD", "password"), ("POSTGRESQL_SSL_MODE", "sslmode"),
                       ("POSTGRESQL_SSL_ROOT_CERT", "sslrootcert"),
                       ("POSTGRESQL_TIMEOUT", "connect_timeout")):
        if values.get(key):
            params[param] = values[key]
    return psycopg.conninfo.make_conninfo(**params)


def resolve_target(target: str, env_file: Path | None = None) -> str:
    """'postgresql' (the seed's word): the POSTGRESQL_* settings; anything else is a libpq
    connection string or URI."""
    if target.strip().lower() in ("postgresql", "postgres", "env", ""):
        values = env_settings(env_file)
        if not values.get("POSTGRESQL_HOST"):
            where = f" or in {env_file}" if env_file else ""
            raise TargetError("--target postgresql: POSTGRESQL_HOST is not set (in the"
                              f" environment{where}); or pass a connection string")
        return dsn_from_settings(values)
    return target


def describe_dsn(dsn: str) -> str:
    """user@host:port/dbname, without the password."""
    try:
        p = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable connection string)"
    return (f"{p.get('user') or os.environ.get('PGUSER') or '(default user)'}@"
            f"{p.get('host') or 'localhost'}:{p.get('port') or 5432}/{p.get('dbname') or ''}")


def connect(dsn: str, application_name: str = "bgdb-migrate-sqlite") -> Connection:
    try:
        return psycopg.connect(dsn, autocommit=True, application_name=application_name)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TargetError(f"cannot connect to {describe_dsn(dsn)}: {first}") from exc


# ------------------------------------------------------------------------------------------------
# Schema and privileges


def missing_tables(conn: Connection, names: Iterable[str] = ORDER) -> list[str]:
    return [n for n in names
            if conn.execute("SELECT to_regclass(%s)", [f"public.{n}"]).fetchone() == (None,)]


def table_columns(conn: Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped", [f"public.{table}"]).fetchall()
    return {r[0] for r in rows}


def check_schema(conn: Connection, columns_needed: Mapping[str, Sequence[str]]) -> None:
    missing = missing_tables(conn, columns_needed)
    if missing:
        raise TargetError(f"{describe_dsn(conn.info.dsn)}: the schema is not applied (no table"
                          f" {', '.join(missing)}); run `python -m bgdb.migrate --dsn ...` or"
                          " bgdb-setup-postgresql --apply-migrations first")
    for table, cols in columns_needed.items():
        absent = sorted(set(cols) - table_columns(conn, table))
        if absent:
            raise TargetError(f"{table}: PostgreSQL has no column {', '.join(absent)}"
                              " (schema older than this tool? apply the pending migrations)")


def check_privileges(conn: Connection, tables: Iterable[str]) -> None:
    """What the migration needs: INSERT on the tables, UPDATE on their id sequences (to
    advance them), and the ledger schema (created if missing: CREATE on the database)."""
    problems = []
    for t in tables:
        row = conn.execute(
            "SELECT has_table_privilege(%(t)s, 'INSERT'),"
            " has_sequence_privilege(pg_get_serial_sequence(%(t)s, 'id'), 'UPDATE')",
            {"t": f"public.{t}"}).fetchone()
        assert row is not None
        if not row[0]:
            problems.append(f"INSERT on {t}")
        if not row[1]:
            problems.append(f"UPDATE on {t}'s id sequence")
    row = conn.execute(
        "SELECT to_regnamespace(%s) IS NOT NULL,"
        " has_database_privilege(current_database(), 'CREATE'),"
        " CASE WHEN to_regnamespace(%s) IS NOT NULL"
        "      THEN has_schema_privilege(%s, 'USAGE') END",
        [SCHEMA, SCHEMA, SCHEMA]).fetchone()
    assert row is not None
    exists, can_create, can_use = row
    if (not exists and not can_create) or (exists and not can_use):
        problems.append(f"the ledger schema {SCHEMA} (CREATE on the database)")
    if problems:
        user = conn.execute("SELECT current_user").fetchone()
        raise TargetError(f"role {user[0] if user else '?'} lacks {', '.join(problems)}: run the"
                          " migration as the database owner or a superuser (an admin"
                          " connection string in --target), not as the agents' role")


def premake_partitions(conn: Connection, days_back: int) -> int | None:
    """Daily partitions for the last days_back days (and the usual 14 ahead), so migrated rows
    of those days land in their partition instead of the DEFAULT one. None: not possible here
    (no such function, or no privilege)."""
    row = conn.execute(
        "SELECT to_regprocedure('public.bgdb_partition_premake(integer, date)') IS NOT NULL"
        " AND has_function_privilege('public.bgdb_partition_premake(integer, date)',"
        " 'EXECUTE')").fetchone()
    if not row or not row[0]:
        return None
    created = conn.execute(
        "SELECT count(*) FILTER (WHERE action = 'created') FROM public.bgdb_partition_premake("
        "%s, ((now() AT TIME ZONE 'UTC')::date - %s::integer))",
        [days_back + 14, days_back]).fetchone()
    return int(created[0]) if created else 0


# ------------------------------------------------------------------------------------------------
# The ledger


def ledger_exists(conn: Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{SCHEMA}.tables"]).fetchone()
    return bool(row and row[0])


def ensure_ledger(conn: Connection) -> None:
    if ledger_exists(conn):
        return
    with conn.transaction():
        conn.execute(LEDGER_DDL)


def try_lock(conn: Connection, source_key: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                       [LOCK_NS, source_key]).fetchone()
    return bool(row and row[0])


def unlock(conn: Connection, source_key: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", [LOCK_NS, source_key])


def read_source(conn: Connection, source_key: str) -> dict[str, Any] | None:
    if not ledger_exists(conn):
        return None
    cur = conn.execute(
        f"SELECT source_key, source_path, options, migration_time, first_run_at, last_run_at,"
        f" completed_at FROM {SCHEMA}.sources WHERE source_key = %s", [source_key])
    row = cur.fetchone()
    if row is None:
        return None
    names = [d.name for d in cur.description or []]
    return dict(zip(names, row, strict=True))


def register_source(conn: Connection, source_key: str, path: Path, options: dict[str, Any],
                    migration_time: datetime) -> None:
    conn.execute(
        f"INSERT INTO {SCHEMA}.sources (source_key, source_path, options, migration_time)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (source_key) DO UPDATE"
        " SET last_run_at = now(), source_path = excluded.source_path, completed_at = NULL",
        [source_key, str(path), json.dumps(options), migration_time])


def complete_source(conn: Connection, source_key: str) -> None:
    conn.execute(f"UPDATE {SCHEMA}.sources SET completed_at = now() WHERE source_key = %s",
                 [source_key])


def table_states(conn: Connection, source_key: str) -> dict[str, dict[str, Any]]:
    if not ledger_exists(conn):
        return {}
    cur = conn.execute(
        f"SELECT target_table, source_table, last_rowid, rows_copied, rows_rejected, min_id,"
        f" max_id, completed_at FROM {SCHEMA}.tables WHERE source_key = %s", [source_key])
    names = [d.name for d in cur.description or []]
    return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def record_batch(conn: Connection, source_key: str, target: str, source_table: str,
                 last_rowid: int, copied: int, rejected: int, min_id: int | None,
                 max_id: int | None) -> None:
    conn.execute(
        f"INSERT INTO {SCHEMA}.tables AS t (source_key, target_table, source_table, last_rowid,"
        " rows_copied, rows_rejected, min_id, max_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (source_key, target_table) DO UPDATE SET"
        " last_rowid = excluded.last_rowid, source_table = excluded.source_table,"
        " rows_copied = t.rows_copied + excluded.rows_copied,"
        " rows_rejected = t.rows_rejected + excluded.rows_rejected,"
        " min_id = least(t.min_id, excluded.min_id), max_id = greatest(t.max_id, excluded.max_id),"
        " updated_at = now()",
        [source_key, target, source_table, last_rowid, copied, rejected, min_id, max_id])


def complete_table(conn: Connection, source_key: str, target: str, source_table: str) -> None:
    conn.execute(
        f"INSERT INTO {SCHEMA}.tables (source_key, target_table, source_table, last_rowid,"
        " completed_at) VALUES (%s, %s, %s, 0, now()) ON CONFLICT (source_key, target_table)"
        " DO UPDATE SET completed_at = now()", [source_key, target, source_table])


def write_issues(conn: Connection, source_key: str, issues: Sequence[Issue]) -> None:
    if not issues:
        return
    with conn.cursor() as cur, cur.copy(
            f"COPY {SCHEMA}.issues (source_key, target_table, source_rowid, kind, column_name,"
            " detail, raw) FROM STDIN") as copy:
        for i in issues:
            copy.write_row((source_key, i.table, i.rowid, i.kind, i.column, i.detail, i.raw))


def issue_rowids(conn: Connection, source_key: str, target: str, kind: str) -> set[int]:
    if not ledger_exists(conn):
        return set()
    rows = conn.execute(
        f"SELECT source_rowid FROM {SCHEMA}.issues WHERE source_key = %s AND target_table = %s"
        " AND kind = %s AND source_rowid IS NOT NULL", [source_key, target, kind]).fetchall()
    return {int(r[0]) for r in rows}


def placeholder_agents(conn: Connection, source_key: str) -> list[str]:
    if not ledger_exists(conn):
        return []
    rows = conn.execute(
        f"SELECT detail FROM {SCHEMA}.issues WHERE source_key = %s AND kind = 'placeholder_agent'"
        " ORDER BY detail", [source_key]).fetchall()
    return [r[0] for r in rows]


def issue_counts(conn: Connection, source_key: str) -> dict[tuple[str, str], int]:
    if not ledger_exists(conn):
        return {}
    rows = conn.execute(
        f"SELECT target_table, kind, count(*) FROM {SCHEMA}.issues WHERE source_key = %s"
        " GROUP BY 1, 2", [source_key]).fetchall()
    return {(r[0], r[1]): int(r[2]) for r in rows}


def advance_sequence(conn: Connection, table: str, max_id: int) -> None:
    """Move the table's identity sequence past max_id (never backwards), so the agents' next
    rows do not collide with migrated ids."""
    conn.execute(
        "SELECT setval(s, %(max)s) FROM (SELECT pg_get_serial_sequence(%(t)s, 'id')::regclass"
        " AS s) q WHERE %(max)s > coalesce(pg_sequence_last_value(s), 0)",
        {"t": f"public.{table}", "max": max_id})


def ident(table: str) -> sql.Composed:
    return sql.SQL("public.{}").format(sql.Identifier(table))
