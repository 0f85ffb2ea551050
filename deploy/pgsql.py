"""Facts and operations that talk to PostgreSQL on the host as the postgres OS user (peer auth).

pyinfra's postgres.role(password=...) always reports a change and postgres.sql never is
idempotent; these read state first and yield a command only when something has to change.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from typing import Any, TypeVar

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.api.command import MaskString

from deploy import scram

_NO_SERVER = "__BGDB_NO_SERVER__"
_ERROR = "__BGDB_ERROR__"


def psql(sql: str, *, database: str = "postgres", port: int = 5432, extra: str = "") -> str:
    """A shell command running `sql` as the postgres OS user, stopping at the first error."""
    return (f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -p {port} {extra}"
            f" -d {shlex.quote(database)} -c {shlex.quote(sql)}")


class PsqlRows(FactBase[list[list[str]] | None]):
    """Rows of a query (tab-separated), None when the server is down or the query failed
    (e.g. the database does not exist yet on a fresh host)."""

    def command(self, query: str, database: str = "postgres", port: int = 5432) -> str:
        sock = f"/var/run/postgresql/.s.PGSQL.{port}"
        # A tab quoted for sh (dash): pyinfra runs facts with `sh -c`, where bash's $'\t' is
        # the literal `$\t` and every row would come back as one column.
        run = psql(query, database=database, port=port, extra=f"-F {shlex.quote(chr(9))}")
        return (f"if [ -S {sock} ]; then {run} 2>/dev/null || echo {_ERROR}; "
                f"else echo {_NO_SERVER}; fi")

    def process(self, output: list[str]) -> list[list[str]] | None:
        if output and output[-1] in (_NO_SERVER, _ERROR):
            return None
        return [line.split("\t") for line in output]


class PsqlBatch(FactBase[dict[str, list[list[str]] | None]]):
    """PsqlRows of several queries of one database in one psql session: query -> rows, None
    for a query that failed; every one None when the server is down or the database missing."""

    queries: tuple[str, ...] = ()

    def command(self, queries: tuple[str, ...], database: str = "postgres",
                port: int = 5432) -> str:
        self.queries = queries  # pyinfra processes the output with this same instance
        sock = f"/var/run/postgresql/.s.PGSQL.{port}"
        script = []
        for q in queries:
            script += [q.rstrip().rstrip(";") + ";", f"\\echo {_BATCH} :ERROR"]
        run = (f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=0 -p {port} "
               f"-F {shlex.quote(chr(9))} -d {shlex.quote(database)} -f -")
        lines = " ".join(shlex.quote(line) for line in script)
        return (f"if [ -S {sock} ]; then printf '%s\\n' {lines} | {run} 2>/dev/null "
                f"|| echo {_ERROR}; else echo {_NO_SERVER}; fi")

    def process(self, output: list[str]) -> dict[str, list[list[str]] | None]:
        if output and output[-1] in (_NO_SERVER, _ERROR):
            return dict.fromkeys(self.queries)
        found: dict[str, list[list[str]] | None] = {}
        current: list[list[str]] = []
        answers = iter(self.queries)
        for line in output:
            if line.startswith(_BATCH):
                found[next(answers)] = None if line.endswith("true") else current
                current = []
            else:
                current.append(line.split("\t"))
        return found


_BATCH = "__BGDB_END_OF_QUERY__"
_IN_RECOVERY = "SELECT pg_is_in_recovery()"
# Queries the deploy's operations will ask, registered when they are declared, per host and
# (database, port): the first one asked runs them all (deploy/factcache.py keeps the answers
# until a command changes the host). A no-change deploy asked ~20 queries, one psql each.
_EXPECTED: dict[str, dict[tuple[str, int], set[str]]] = {}


def expect(query: str, database: str = "postgres", port: int = 5432) -> None:
    _EXPECTED.setdefault(host.name, {}).setdefault((database, port), set()).add(query)


def rows(query: str, database: str = "postgres", port: int = 5432) -> list[list[str]] | None:
    expected = _EXPECTED.get(host.name, {}).get((database, port), set())
    if query in expected:
        queries = (_IN_RECOVERY, *sorted(expected))
        answers = host.get_fact(PsqlBatch, queries=queries, database=database, port=port)
        # A standby's catalog changes by replication, without a command on this host: there
        # the answers are not kept (deploy/factcache.py), each query runs when it is asked.
        if query in answers and answers[_IN_RECOVERY] == [["f"]]:
            return answers[query]
    return host.get_fact(PsqlRows, query=query, database=database, port=port)


Op = TypeVar("Op", bound=Callable[..., Any])


def _asks(query_of: Callable[..., tuple[str, str, int]]) -> Callable[[Op], Op]:
    """Register the query an operation will ask (from its arguments) when it is declared."""
    def wrap(op: Op) -> Op:
        @functools.wraps(op)
        def declare(**kwargs: Any) -> Any:
            expect(*query_of(**{k: v for k, v in kwargs.items()
                                if k != "name" and not k.startswith("_")}))
            return op(**kwargs)
        return declare  # type: ignore[return-value]
    return wrap


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _role_query(role_name: str, port: int = 5432, **_: Any) -> tuple[str, str, int]:
    return f"SELECT 1 FROM pg_roles WHERE rolname = {literal(role_name)}", "postgres", port


@_asks(_role_query)
@operation()
def role(role_name: str, *, login: bool, port: int = 5432, attributes: str = ""):
    """Create the role if missing (attributes such as 'SUPERUSER' or 'CONNECTION LIMIT 50')."""
    found = rows(*_role_query(role_name, port))
    if not found:
        kind = "LOGIN" if login else "NOLOGIN"
        yield psql(f"CREATE ROLE {ident(role_name)} {kind} {attributes}", port=port)


def _password_query(role_name: str, port: int = 5432, **_: Any) -> tuple[str, str, int]:
    return (f"SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = "
            f"{literal(role_name)}", "postgres", port)


@_asks(_password_query)
@operation()
def role_password(role_name: str, password: str, port: int = 5432):
    """Set the role's password only when the stored SCRAM verifier does not match it; send the
    verifier, never the plaintext, and mask it in pyinfra's output."""
    stored = rows(*_password_query(role_name, port))
    current = stored[0][0] if stored else None
    if current is not None and scram.matches(password, current):
        return
    sql = f"ALTER ROLE {ident(role_name)} PASSWORD {literal(scram.verifier(password))}"
    yield StringCommand(MaskString(psql(sql, port=port)))


def _database_query(db: str, port: int = 5432, **_: Any) -> tuple[str, str, int]:
    return f"SELECT 1 FROM pg_database WHERE datname = {literal(db)}", "postgres", port


@_asks(_database_query)
@operation()
def database(db: str, owner: str, port: int = 5432):
    found = rows(*_database_query(db, port))
    if not found:
        yield psql(f"CREATE DATABASE {ident(db)} OWNER {ident(owner)}", port=port)


def _extension_query(ext: str, database_name: str, port: int = 5432,
                     **_: Any) -> tuple[str, str, int]:
    return f"SELECT 1 FROM pg_extension WHERE extname = {literal(ext)}", database_name, port


@_asks(_extension_query)
@operation()
def extension(ext: str, database_name: str, port: int = 5432):
    found = rows(*_extension_query(ext, database_name, port))
    if not found:
        yield psql(f"CREATE EXTENSION IF NOT EXISTS {ident(ext)}", database=database_name,
                   port=port)


@_asks(_extension_query)
@operation()
def drop_extension(ext: str, database_name: str, port: int = 5432):
    found = rows(*_extension_query(ext, database_name, port))
    if found:
        yield psql(f"DROP EXTENSION {ident(ext)}", database=database_name, port=port)


@operation()
def apply_config(unit: str, port: int = 5432):
    """Reload, then restart only if a postmaster-context setting is waiting for one.

    pg_file_settings re-reads the files at query time and marks a postmaster setting whose new
    value differs from the running one with 'setting could not be applied': the same fact as
    pg_settings.pending_restart, without racing the asynchronous SIGHUP of a reload.
    """
    pending = ("SELECT count(*) FROM pg_file_settings f JOIN pg_settings s USING (name) "
               "WHERE s.context = 'postmaster' AND f.error IS NOT NULL")
    yield (
        f"systemctl reload {unit} && n=$({psql(pending, port=port)}) && "
        f'if [ "$n" -gt 0 ]; then echo "restart: $n postmaster setting(s) changed"; '
        f"systemctl restart {unit}; else echo 'reloaded, no restart needed'; fi"
    )


def _when_query(when: str, database: str = "postgres", port: int = 5432,
                **_: Any) -> tuple[str, str, int]:
    return when, database, port


@_asks(_when_query)
@operation()
def run_if(sql: str, when: str, database: str = "postgres", port: int = 5432):
    """Run `sql` only when the query `when` returns true (t): idempotent one-off statements."""
    found = rows(when, database=database, port=port)
    if found and found[0] and found[0][0] == "t":
        yield psql(sql, database=database, port=port)
