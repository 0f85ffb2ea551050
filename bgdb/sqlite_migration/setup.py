"""Check the PostgreSQL target the agents will use, then write their environment file.

    bgdb-setup-postgresql [--env-file postgresql.env] [--host H] [--user U] ...
                          [--admin-dsn DSN [--apply-migrations]] [--check-only]
    (python -m bgdb.sqlite_migration.setup)

The seed's `setup_postgresql_environment.py`. Settings come from the flags, else the
environment's POSTGRESQL_* variables, else the existing env file, else the defaults (database
background_agents, user bg_agents_user, port 5432, sslmode verify-full, pool 10, timeout 30). The
password: POSTGRESQL_PASSWORD, --password-file, the existing env file, or the bundle's generated
one in .secrets/passwords/<user> (never generated here); with a verify-* sslmode and no
POSTGRESQL_SSL_ROOT_CERT, the bundle's CA (.secrets/ca/ca.crt) when it exists.

Checks, as the agents' role, with its own credentials:
  reachable       it connects (and says whether TLS is in use);
  schema          every migration in sql/migrations is applied (read from schema_migrations
                  through --admin-dsn if given, since the agents' role may not read it; else the
                  tables are looked up);
  can write       it inserts an agent, a heartbeat and a metric and reads them back, in a
                  transaction that is rolled back (nothing stays).
Then the env file is written (0600, atomically; its other lines are kept). Exit 0 all passed,
1 a check failed (the file is not written), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import secrets as _random
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psycopg

from bgdb import migrate as schema_migrate
from bgdb.sqlite_migration import MigrationError, envfile, target
from bgdb.sqlite_migration.mapping import ORDER

DEFAULTS = {
    "POSTGRESQL_PORT": "5432",
    "POSTGRESQL_DATABASE": "background_agents",
    "POSTGRESQL_USER": "bg_agents_user",
    "POSTGRESQL_SSL_MODE": "verify-full",
    "POSTGRESQL_POOL_SIZE": "10",
    "POSTGRESQL_TIMEOUT": "30",
}
WRITTEN = ("POSTGRESQL_HOST", "POSTGRESQL_PORT", "POSTGRESQL_DATABASE", "POSTGRESQL_USER",
           "POSTGRESQL_PASSWORD", "POSTGRESQL_SSL_MODE", "POSTGRESQL_SSL_ROOT_CERT",
           "POSTGRESQL_POOL_SIZE", "POSTGRESQL_TIMEOUT")
FLAGS = {"host": "POSTGRESQL_HOST", "port": "POSTGRESQL_PORT", "database": "POSTGRESQL_DATABASE",
         "user": "POSTGRESQL_USER", "ssl_mode": "POSTGRESQL_SSL_MODE",
         "ssl_root_cert": "POSTGRESQL_SSL_ROOT_CERT", "pool_size": "POSTGRESQL_POOL_SIZE",
         "timeout": "POSTGRESQL_TIMEOUT"}
REPO = Path(__file__).resolve().parents[2]


class SetupError(MigrationError):
    pass


def settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None
             ) -> dict[str, str]:
    env = os.environ if environ is None else environ
    existing = envfile.read(args.env_file) if args.env_file.exists() else {}
    values: dict[str, str] = {}
    for key in WRITTEN:
        for candidate in (_flag(args, key), env.get(key), existing.get(key), DEFAULTS.get(key)):
            if candidate:
                values[key] = str(candidate)
                break
    if args.password_file:
        try:
            values["POSTGRESQL_PASSWORD"] = args.password_file.read_text().strip()
        except OSError as exc:
            raise SetupError(f"--password-file {args.password_file}: "
                             f"{exc.strerror or exc}") from exc
    secrets_dir = Path(env.get("BGDB_SECRETS_DIR") or REPO / ".secrets")
    if not values.get("POSTGRESQL_PASSWORD"):
        stored = secrets_dir / "passwords" / values["POSTGRESQL_USER"]
        if stored.is_file():
            values["POSTGRESQL_PASSWORD"] = stored.read_text().strip()
    ca = secrets_dir / "ca" / "ca.crt"
    if (not values.get("POSTGRESQL_SSL_ROOT_CERT") and values["POSTGRESQL_SSL_MODE"].startswith(
            "verify") and ca.is_file()):
        values["POSTGRESQL_SSL_ROOT_CERT"] = str(ca.resolve())  # the bundle's CA
    if not values.get("POSTGRESQL_HOST"):
        raise SetupError("no host: pass --host or set POSTGRESQL_HOST")
    for key in ("POSTGRESQL_PORT", "POSTGRESQL_POOL_SIZE", "POSTGRESQL_TIMEOUT"):
        if not values[key].isdigit() or int(values[key]) < 1:
            raise SetupError(f"{key} = {values[key]!r}: expected a positive integer")
    return {k: values[k] for k in WRITTEN if k in values}


def _flag(args: argparse.Namespace, key: str) -> str | None:
    for name, k in FLAGS.items():
        if k == key:
            value = getattr(args, name, None)
            return None if value is None else str(value)
    return None


class Checks:
    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.failed: list[str] = []

    def result(self, name: str, ok: bool, detail: str) -> bool:
        self.out(f"{'ok  ' if ok else 'FAIL'}  {name:<10} {detail}")
        if not ok:
            self.failed.append(name)
        return ok


def check_schema_via(conn: target.Connection) -> tuple[bool, str]:
    """(ok, detail) from schema_migrations when readable, else from the tables themselves."""
    readable = conn.execute(
        "SELECT to_regclass('public.schema_migrations') IS NOT NULL AND"
        " has_table_privilege('public.schema_migrations', 'SELECT')").fetchone()
    if readable and readable[0]:
        p = schema_migrate.plan(conn)
        if p.drift:
            return False, "; ".join(p.drift)
        if p.pending:
            return False, (f"pending: {', '.join(m.filename for m in p.pending)}"
                           " (bgdb-setup-postgresql --admin-dsn ... --apply-migrations, or"
                           " python -m bgdb.migrate --dsn ...)")
        return True, f"{len(p.applied)} migration(s) applied, none pending"
    missing = target.missing_tables(conn, [*ORDER, "agent_health_summary"])
    if missing:
        return False, (f"missing {', '.join(missing)}: apply the migrations"
                       " (--admin-dsn ... --apply-migrations)")
    return True, "all tables present (schema_migrations not readable by this role)"


def probe_writes(conn: target.Connection) -> tuple[bool, str]:
    """Insert and read back an agent, a heartbeat and a metric (the seed's statements: only
    the seed's columns), then roll back."""
    agent = f"bgdb-setup-probe-{_random.token_hex(6)}"
    try:
        conn.execute("BEGIN")
        try:
            conn.execute("INSERT INTO agents (agent_id, state, started_at)"
                         " VALUES (%s, 'running', now())", [agent])
            conn.execute("INSERT INTO agent_heartbeats (agent_id, timestamp, state, metrics)"
                         " VALUES (%s, now(), 'running', '{\"cpu_usage\": 0}')", [agent])
            conn.execute("INSERT INTO performance_metrics (agent_id, metric_name, value)"
                         " VALUES (%s, 'probe', 1)", [agent])
            row = conn.execute("SELECT count(*) FROM agent_heartbeats WHERE agent_id = %s",
                               [agent]).fetchone()
        finally:
            conn.execute("ROLLBACK")
    except psycopg.Error as exc:
        first = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
        return False, f"{first} (the agents' role needs INSERT/SELECT; see sql/roles.sql)"
    if not row or row[0] != 1:
        return False, "the inserted heartbeat could not be read back"
    return True, "inserted and read back an agent, a heartbeat and a metric (rolled back)"


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    values = settings(args)
    dsn = target.dsn_from_settings(values)
    checks = Checks(out)
    if args.apply_migrations:
        if not args.admin_dsn:
            raise SetupError("--apply-migrations needs --admin-dsn (a superuser connection)")
        with target.connect(args.admin_dsn, "bgdb-setup-postgresql") as admin:
            result = schema_migrate.apply(admin,
                                          app_user=args.app_user or values["POSTGRESQL_USER"])
        checks.result("migrate", True, f"applied {len(result.applied)} migration(s)"
                      if result.applied else "schema up to date")
    try:
        conn = target.connect(dsn, "bgdb-setup-postgresql")
    except target.TargetError as exc:
        checks.result("reachable", False, str(exc))
        out("the environment file was not written")
        return 1
    with conn:
        info = conn.info
        tls = "TLS" if info.pgconn.ssl_in_use else "no TLS"
        checks.result("reachable", True, f"{target.describe_dsn(dsn)}, PostgreSQL"
                      f" {info.server_version // 10000}.{info.server_version % 10000}, {tls}")
        if args.admin_dsn:
            with target.connect(args.admin_dsn, "bgdb-setup-postgresql") as admin:
                ok, detail = check_schema_via(admin)
        else:
            ok, detail = check_schema_via(conn)
        checks.result("schema", ok, detail)
        if ok:
            checks.result("can write", *probe_writes(conn))
    if checks.failed:
        out(f"the environment file was not written ({', '.join(checks.failed)} failed)")
        return 1
    if args.check_only:
        out("all checks passed (--check-only: no file written)")
        return 0
    existing = args.env_file.read_text(encoding="utf-8") if args.env_file.exists() else ""
    envfile.write_private(args.env_file, envfile.render(values, existing))
    out(f"wrote {args.env_file} (mode 0600): {', '.join(k for k in WRITTEN if k in values)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bgdb-setup-postgresql",
        description="Check the agents' PostgreSQL (reachable, schema applied, role can write)"
                    " and write their environment file with the POSTGRESQL_* settings.")
    ap.add_argument("--env-file", type=Path, default=Path("postgresql.env"),
                    help="the file to write (default: postgresql.env); its other lines are kept")
    ap.add_argument("--host", help="POSTGRESQL_HOST")
    ap.add_argument("--port", type=int, help="POSTGRESQL_PORT (5432)")
    ap.add_argument("--database", help="POSTGRESQL_DATABASE (background_agents)")
    ap.add_argument("--user", help="POSTGRESQL_USER (bg_agents_user)")
    ap.add_argument("--password-file", type=Path, help="file holding POSTGRESQL_PASSWORD")
    ap.add_argument("--ssl-mode", help="POSTGRESQL_SSL_MODE (verify-full)")
    ap.add_argument("--ssl-root-cert", help="POSTGRESQL_SSL_ROOT_CERT: the bundle's CA"
                    " (.secrets/ca/ca.crt, or /etc/bgdb/ca.crt on a database host)")
    ap.add_argument("--pool-size", type=int, help="POSTGRESQL_POOL_SIZE (10)")
    ap.add_argument("--timeout", type=int, help="POSTGRESQL_TIMEOUT, seconds (30)")
    ap.add_argument("--admin-dsn", help="a superuser connection string: reads the migration"
                    " history (and applies it with --apply-migrations)")
    ap.add_argument("--apply-migrations", action="store_true",
                    help="apply pending schema migrations first (needs --admin-dsn)")
    ap.add_argument("--app-user", help="with --apply-migrations: the role the schema grants to"
                    " (default: POSTGRESQL_USER)")
    ap.add_argument("--check-only", action="store_true", help="check, write nothing")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except schema_migrate.MigrationError as exc:
        print(f"error: schema migration: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"error: PostgreSQL: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
