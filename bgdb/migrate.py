"""Versioned schema migrations: sql/roles.sql, then the pending sql/migrations/NNNN_name.sql.

    python -m bgdb.migrate --dsn DSN [--dir sql/migrations] [--role bg_agents_owner]
                           [--app-user bg_agents_user] [--dry-run] [--status]

Each migration runs in its own transaction, as the owner role (SET LOCAL ROLE), and is recorded
in public.schema_migrations with the sha256 of the file. A session-level advisory lock, held from
reading the history to the last commit, serialises concurrent runners; it is not taken per
transaction (pg_advisory_xact_lock) because acquiring an advisory lock does not make the backend
process catalog invalidations: a runner that waited would still see the catalogs as they were
before the other runner's DDL (CREATE TABLE then fails with "already exists"). The runner must
therefore connect directly, not through a transaction-pooling PgBouncer.

A file whose content changed after it was applied is an error naming the file (exit 2); so is a
badly named file. The one exception is a compatible correction: a file may accept the checksum of
an earlier version of itself with a line `-- accepts-checksum: <sha256>` (what Liquibase calls
validCheckSum), for a fix that databases which applied the old text do not need. Database
errors exit 1, naming the file too.

Runs on the database hosts too, so: stdlib + psycopg 3.1 (Debian 12's python3-psycopg) only.
The deploy calls `plan`, `apply` and `status` directly.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"
DEFAULT_OWNER = "bg_agents_owner"
DEFAULT_APP_USER = "bg_agents_user"
# One key for every runner of every version: pg_advisory_lock(LOCK_KEY) serialises them.
LOCK_KEY = 0x6267_6462_0004  # "bgdb" + issue 4
HISTORY_TABLE = "public.schema_migrations"
NAME_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9][a-z0-9_]*)\.sql$")
ACCEPTS_RE = re.compile(r"^-- accepts-checksum: ([0-9a-f]{64})$", re.MULTILINE)
NOTICE_PREFIX = "bgdb: "
# COMMENT ON DATABASE records which roles.sql (and parameters) was applied to that database last
# (its grants are per database, so the record is too: a run against another database of the same
# cluster must not make this one look out of date), so a
# deploy can tell "nothing to do" without running it (see check()).
FINGERPRINT_PREFIX = "bgdb roles.sql "

Connection = psycopg.Connection[Any]
CHECK_WORK_EXIT = 3  # --check: there is something to apply


class MigrationError(Exception):
    """A migration could not be applied (database error); exit code 1."""

    exit_code = 1


class NamingError(MigrationError):
    """A file in the migrations directory is not named NNNN_name.sql, or versions collide."""

    exit_code = 2


class DriftError(MigrationError):
    """The database's migration history does not match the files (changed or missing file)."""

    exit_code = 2


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str
    text: str = field(repr=False)

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def accepted(self) -> frozenset[str]:
        """Checksums a database may have recorded for this file: its own, and the earlier
        versions it declares compatible."""
        return frozenset({self.checksum, *ACCEPTS_RE.findall(self.text)})


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime | None = None


@dataclass(frozen=True)
class Plan:
    """Files compared with the history: what is pending, and what drifted."""

    migrations: list[Migration]
    applied: list[Applied]
    pending: list[Migration]
    changed: list[Migration]
    missing: list[Applied]

    @property
    def drift(self) -> list[str]:
        out = [f"{m.filename}: changed after it was applied (checksum differs)"
               for m in self.changed]
        out += [f"{a.version:04d}_{a.name}.sql: applied but missing from the directory"
                for a in self.missing]
        return out

    def raise_for_drift(self) -> None:
        if self.drift:
            raise DriftError("; ".join(self.drift))


@dataclass
class ApplyResult:
    applied: list[Migration] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)  # what a dry run would apply
    role_changes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.role_changes)


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_name(filename: str) -> tuple[int, str]:
    """'0007_add_index.sql' -> (7, 'add_index'); anything else raises NamingError."""
    match = NAME_RE.match(filename)
    if not match:
        raise NamingError(
            f"{filename}: migration files must be named NNNN_name.sql "
            "(4 digits, lowercase letters, digits and underscores)"
        )
    version = int(match["version"])
    if version == 0:
        raise NamingError(f"{filename}: version 0000 is not allowed, start at 0001")
    return version, match["name"]


def discover(directory: Path) -> list[Migration]:
    """The *.sql files of directory, ordered by version. Other files (README, ...) are ignored."""
    if not directory.is_dir():
        raise MigrationError(f"{directory}: not a directory")
    by_version: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql" or not path.is_file():
            continue
        version, name = parse_name(path.name)
        if version in by_version:
            raise NamingError(
                f"{path.name}: version {version:04d} already used by {by_version[version].filename}"
            )
        data = path.read_bytes()
        by_version[version] = Migration(version, name, path, checksum(data), data.decode("utf-8"))
    return [by_version[v] for v in sorted(by_version)]


def compare(migrations: Sequence[Migration], applied: Sequence[Applied]) -> Plan:
    """Pure comparison of files and history (no database)."""
    files = {m.version: m for m in migrations}
    done = {a.version: a for a in applied}
    return Plan(
        migrations=list(migrations),
        applied=sorted(applied, key=lambda a: a.version),
        pending=[m for m in migrations if m.version not in done],
        changed=[m for m in migrations
                 if m.version in done and done[m.version].checksum not in m.accepted],
        missing=[a for v, a in sorted(done.items()) if v not in files],
    )


def connect(dsn: str) -> Connection:
    return psycopg.connect(dsn, autocommit=True, application_name="bgdb-migrate")


def read_applied(conn: Connection) -> list[Applied]:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [HISTORY_TABLE]).fetchone()
    if not row or not row[0]:
        return []
    rows = conn.execute(
        f"SELECT version, name, checksum, applied_at FROM {HISTORY_TABLE} ORDER BY version"
    ).fetchall()
    return [Applied(*r) for r in rows]


def plan(conn: Connection, directory: Path = DEFAULT_DIR) -> Plan:
    return compare(discover(directory), read_applied(conn))


def status(conn: Connection, directory: Path = DEFAULT_DIR) -> list[tuple[str, str]]:
    """(file, state) per migration: 'applied <time>', 'pending', 'CHANGED ...', 'MISSING ...'."""
    p = plan(conn, directory)
    done = {a.version: a for a in p.applied}
    changed = {m.version for m in p.changed}
    rows: list[tuple[str, str]] = []
    for m in p.migrations:
        if m.version in changed:
            rows.append((m.filename, "CHANGED since applied (checksum differs)"))
        elif m.version in done:
            rows.append((m.filename, f"applied {done[m.version].applied_at:%Y-%m-%d %H:%M:%S%z}"))
        else:
            rows.append((m.filename, "pending"))
    rows += [(f"{a.version:04d}_{a.name}.sql", "MISSING file, applied") for a in p.missing]
    return rows


def apply_roles(
    conn: Connection,
    roles_file: Path,
    *,
    app_user: str,
    app_connection_limit: int | None = None,
    connect_roles: Sequence[str] = (),
) -> list[str]:
    """Run roles.sql (idempotent) and return the changes it reported.

    app_connection_limit None leaves an existing app role's limit alone (a new one gets 100).
    connect_roles: more existing roles to grant CONNECT (e.g. PgBouncer's auth_user).
    """
    changes: list[str] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        if message.startswith(NOTICE_PREFIX):
            changes.append(message[len(NOTICE_PREFIX):])

    text = roles_file.read_text(encoding="utf-8")
    conn.add_notice_handler(on_notice)
    try:
        with conn.transaction():
            conn.execute(
                "SELECT set_config('bgdb.app_user', %s, true),"
                " set_config('bgdb.app_connection_limit', %s, true),"
                " set_config('bgdb.connect_roles', %s, true)",
                [app_user, "" if app_connection_limit is None else str(app_connection_limit),
                 ",".join(connect_roles)],
            )
            conn.execute(text, prepare=False)
    except psycopg.Error as exc:
        raise MigrationError(f"{roles_file.name}: {exc}".strip()) from exc
    finally:
        conn.remove_notice_handler(on_notice)
    return changes


def roles_fingerprint(roles_file: Path, *, app_user: str, app_connection_limit: int | None,
                      connect_roles: Sequence[str]) -> str:
    """What roles.sql was last applied with: its content and the parameters it was given."""
    params = f"|{app_user}|{app_connection_limit}|{','.join(sorted(connect_roles))}"
    views = monitor_views_file(roles_file)
    extra = views.read_bytes() if views.exists() else b""
    return checksum(roles_file.read_bytes() + extra + params.encode())


def monitor_views_file(roles_file: Path) -> Path:
    """sql/monitor_views.sql, beside roles.sql: the monitor role's payload-free views."""
    return roles_file.parent / "monitor_views.sql"


# A view blocks a change of the columns it shows: migrations run without them (monitor_views.sql
# makes them again after the pass).
DROP_MONITOR_VIEWS = """DO $drop$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c
             WHERE c.relnamespace = to_regnamespace('bg_agents_monitor') AND c.relkind = 'v'
    LOOP
        EXECUTE format('DROP VIEW IF EXISTS %s', r.rel);
    END LOOP;
END
$drop$"""


def apply_monitor_views(conn: Connection, roles_file: Path) -> None:
    views = monitor_views_file(roles_file)
    if not views.exists():
        return
    try:
        conn.execute(views.read_text(encoding="utf-8"), prepare=False)
    except psycopg.Error as exc:
        raise MigrationError(f"{views.name}: {exc}".strip()) from exc


def read_roles_fingerprint(conn: Connection, owner: str) -> str | None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
        " WHERE datname = current_database()"
    ).fetchone()
    comment = row[0] if row else None
    if not comment or not comment.startswith(FINGERPRINT_PREFIX):
        return None
    return str(comment[len(FINGERPRINT_PREFIX):])


def _roles(directory: Path, roles_file: Path | None, *, app_user: str,
           app_connection_limit: int | None, connect_roles: Sequence[str]) -> tuple[Path, str]:
    """The roles.sql to run (default: beside the migrations directory) and its fingerprint."""
    roles = roles_file if roles_file is not None else directory.parent / "roles.sql"
    return roles, roles_fingerprint(roles, app_user=app_user,
                                    app_connection_limit=app_connection_limit,
                                    connect_roles=connect_roles)


def check(
    conn: Connection,
    directory: Path = DEFAULT_DIR,
    *,
    roles_file: Path | None = None,
    owner: str = DEFAULT_OWNER,
    app_user: str = DEFAULT_APP_USER,
    app_connection_limit: int | None = None,
    connect_roles: Sequence[str] = (),
) -> list[str]:
    """What an apply would do, changing nothing: pending files, and roles.sql when it (or its
    parameters) differ from what was last applied. Drift raises DriftError."""
    p = plan(conn, directory)
    p.raise_for_drift()
    roles, wanted = _roles(directory, roles_file, app_user=app_user,
                           app_connection_limit=app_connection_limit, connect_roles=connect_roles)
    work = [f"pending {m.filename}" for m in p.pending]
    if read_roles_fingerprint(conn, owner) != wanted:
        work.insert(0, f"roles: {roles.name} not applied in this version")
    return work


def ensure_history_table(conn: Connection, *, owner: str, app_user: str) -> None:
    with conn.transaction():
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [HISTORY_TABLE]).fetchone()
        if row and row[0]:
            return
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner)))
        conn.execute(
            f"CREATE TABLE {HISTORY_TABLE} ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        # The owner's default privileges just gave the application write access: take it back,
        # the application must not rewrite the migration history.
        conn.execute(
            sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(
                sql.SQL(HISTORY_TABLE), sql.Identifier(app_user)
            )
        )


def apply_one(conn: Connection, migration: Migration, *, owner: str) -> bool:
    """Apply one migration in one transaction; False if it is recorded already.

    Call with the runner's advisory lock held (apply() does).
    """
    try:
        with conn.transaction():
            row = conn.execute(
                f"SELECT checksum FROM {HISTORY_TABLE} WHERE version = %s", [migration.version]
            ).fetchone()
            if row:
                if row[0] not in migration.accepted:
                    raise DriftError(f"{migration.filename}: changed after it was applied")
                return False
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner)))
            conn.execute(migration.text, prepare=False)
            conn.execute(
                f"INSERT INTO {HISTORY_TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                [migration.version, migration.name, migration.checksum],
            )
    except psycopg.Error as exc:
        raise MigrationError(f"{migration.filename}: {exc}".strip()) from exc
    return True


def apply(
    conn: Connection,
    directory: Path = DEFAULT_DIR,
    *,
    roles_file: Path | None = None,
    owner: str = DEFAULT_OWNER,
    app_user: str = DEFAULT_APP_USER,
    app_connection_limit: int | None = None,
    connect_roles: Sequence[str] = (),
    dry_run: bool = False,
    report: Callable[[str], None] | None = None,
) -> ApplyResult:
    """Roles, then every pending migration in version order. `conn` must be in autocommit mode.

    Drift (a changed or missing applied file) is checked before anything is changed. A dry run
    changes nothing and returns the pending migrations.
    """
    if not conn.autocommit:
        raise MigrationError("apply() needs an autocommit connection (one transaction per file)")
    if dry_run:
        p = plan(conn, directory)
        p.raise_for_drift()
        return ApplyResult(pending=p.pending)
    conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    try:
        return _apply_locked(conn, directory, roles_file=roles_file, owner=owner,
                             app_user=app_user, app_connection_limit=app_connection_limit,
                             connect_roles=connect_roles, report=report)
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def _apply_locked(
    conn: Connection,
    directory: Path,
    *,
    roles_file: Path | None,
    owner: str,
    app_user: str,
    app_connection_limit: int | None,
    connect_roles: Sequence[str],
    report: Callable[[str], None] | None,
) -> ApplyResult:
    p = plan(conn, directory)
    p.raise_for_drift()
    result = ApplyResult()
    roles, fingerprint = _roles(directory, roles_file, app_user=app_user,
                                app_connection_limit=app_connection_limit,
                                connect_roles=connect_roles)
    result.role_changes = apply_roles(
        conn, roles, app_user=app_user, app_connection_limit=app_connection_limit,
        connect_roles=connect_roles,
    )
    dbname = conn.execute("SELECT current_database()").fetchone()
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(str(dbname[0] if dbname else "")),
        sql.Literal(FINGERPRINT_PREFIX + fingerprint)))
    for change in result.role_changes:
        if report:
            report(f"role: {change}")
    ensure_history_table(conn, owner=owner, app_user=app_user)
    if p.pending:
        conn.execute(DROP_MONITOR_VIEWS)
    try:
        for migration in p.pending:
            if apply_one(conn, migration, owner=owner):
                result.applied.append(migration)
                if report:
                    report(f"applied {migration.filename}")
    finally:
        apply_monitor_views(conn, roles)  # also after a failed migration: the exporter reads them
    return result


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bgdb.migrate", description=__doc__.split("\n")[0])
    ap.add_argument("--dsn", default="", help="libpq connection string (default: PG* environment)")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="migrations directory")
    ap.add_argument("--roles-file", type=Path, help="default: roles.sql next to --dir")
    ap.add_argument("--role", default=DEFAULT_OWNER, help="owner role the migrations run as")
    ap.add_argument("--app-user", default=os.environ.get("POSTGRESQL_USER") or DEFAULT_APP_USER)
    ap.add_argument("--app-connection-limit", type=int,
                    help="enforce this limit on the app role (default: keep; 100 when created)")
    ap.add_argument("--grant-connect", action="append", default=[], metavar="ROLE",
                    help="also grant CONNECT to this existing role (repeatable), e.g. pgbouncer")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print what would be applied")
    mode.add_argument("--status", action="store_true", help="print each migration's state")
    mode.add_argument("--check", action="store_true",
                      help="print what an apply would do; exit 3 if anything, 0 if up to date")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with connect(args.dsn) as conn:
            if args.check:
                work = check(conn, args.dir, roles_file=args.roles_file, owner=args.role,
                             app_user=args.app_user,
                             app_connection_limit=args.app_connection_limit,
                             connect_roles=args.grant_connect)
                for line in work:
                    print(line)
                print("up to date" if not work else f"{len(work)} change(s) to apply")
                return CHECK_WORK_EXIT if work else 0
            if args.status:
                rows = status(conn, args.dir)
                width = max((len(f) for f, _ in rows), default=0)
                for filename, state in rows:
                    print(f"{filename:<{width}}  {state}")
                return DriftError.exit_code if plan(conn, args.dir).drift else 0
            result = apply(
                conn,
                args.dir,
                roles_file=args.roles_file,
                owner=args.role,
                app_user=args.app_user,
                app_connection_limit=args.app_connection_limit,
                connect_roles=args.grant_connect,
                dry_run=args.dry_run,
                report=lambda line: print(line, flush=True),
            )
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except psycopg.Error as exc:
        print(f"error: {exc}".strip(), file=sys.stderr)
        return 1
    if args.dry_run:
        for m in result.pending:
            print(f"would apply {m.filename}")
        print(f"{len(result.pending)} migration(s) pending" if result.pending else "up to date")
    else:
        print(f"applied {len(result.applied)} migration(s)" if result.applied else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
