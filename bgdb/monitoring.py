"""Facts about a database host for `bgdb status` and `bgdb troubleshoot`.

SQL comes from sql/monitoring/*.sql only (the files the exporter and the tests use too): a file
runs on the host as the postgres OS user over the local socket (no password, no pg_hba change),
wrapped so that psql prints its rows as one line of JSON, with a statement timeout. PgBouncer's
console is asked over TLS from this machine as the monitoring role (its console only takes
password logins). Disk space and the backup jobs' status files are read over SSH.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bgdb.remote import Target
from deploy import secrets
from deploy.settings import Data, backup_settings, pgbouncer_port

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "sql" / "monitoring"
MONITOR_ROLE = "bg_agents_monitor"
PGBOUNCER_UNIT = "pgbouncer"
Row = dict[str, Any]


class QueryError(RuntimeError):
    """A monitoring query failed on the host; the message has psql's error."""


def sql_file(name: str) -> str:
    return (MONITORING / f"{name}.sql").read_text()


def statements_file(server_version_num: int) -> str:
    """pg_stat_statements' slowest statements: mean_time (PostgreSQL 12) or mean_exec_time."""
    name = "slowest_pg12" if server_version_num < 130000 else "slowest"
    return f"pg_stat_statements/{name}"


def as_json_query(sql: str) -> str:
    """The file's query wrapped to return its rows as one JSON array (json, not jsonb: the
    columns keep the file's order)."""
    lines = sql.strip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()  # comments after the statement's ';'
    body = "\n".join(lines).rstrip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    # The newline before ")": the last line may end with a -- comment.
    return f"SELECT coalesce(json_agg(q), '[]'::json) FROM (\n{body}\n) q"


def rows(target: Target, name: str, *, database: str | None = None,
         timeout_ms: int = 30000, settings: Mapping[str, str] | None = None) -> list[Row]:
    """Rows of sql/monitoring/<name>.sql run on the host, as dicts (JSON types); `settings` are
    session settings the file reads (e.g. bgdb.long_query_seconds)."""
    db = database or target.app.database
    options = f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms // 2}"
    for key, value in (settings or {}).items():
        options += f" -c {key}={value}"
    # cd /: psql as postgres would warn that it cannot enter the SSH user's home directory.
    cmd = (f"cd / && runuser -u postgres -- env PGOPTIONS={shlex.quote(options)} "
           f"PGAPPNAME=bgdb-cli psql -XAtq -v ON_ERROR_STOP=1 -p {target.pg.port} "
           f"-d {shlex.quote(db)} "
           f"-c {shlex.quote(as_json_query(sql_file(name)))}")
    out = target.host.run(cmd)
    if out.rc != 0:
        raise QueryError(f"{name}.sql failed on {target.name}: {last_line(out.stderr)}")
    try:
        value = json.loads(out.stdout.strip() or "[]")
    except ValueError as exc:
        raise QueryError(f"{name}.sql on {target.name}: unreadable output ({exc})") from None
    return list(value)


def one(target: Target, name: str, **kwargs: Any) -> Row:
    found = rows(target, name, **kwargs)
    return found[0] if found else {}


def last_line(text: str) -> str:
    """The line of an error output worth showing: psql's ERROR/FATAL line, else the last."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR:" in ln or "FATAL:" in ln]
    return (errors or lines or ["(no output)"])[-1]


# --- disk --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Disk:
    path: str
    filesystem: str
    mount: str
    size_bytes: int
    used_bytes: int
    free_bytes: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free_bytes / self.size_bytes if self.size_bytes else 0.0


def parse_df(path: str, output: str) -> Disk:
    """`df -P -B1 PATH`: a header, then filesystem, size, used, available, use%, mount."""
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ValueError(f"unexpected df output: {output!r}")
    fields = lines[-1].split()
    if len(fields) < 6:
        raise ValueError(f"unexpected df output: {output!r}")
    return Disk(path, fields[0], " ".join(fields[5:]), int(fields[1]), int(fields[2]),
                int(fields[3]))


def disk(target: Target, path: str) -> Disk:
    out = target.host.run(f"df -P -B1 {shlex.quote(path)}")
    if out.rc != 0:
        raise QueryError(f"df {path} failed on {target.name}: {last_line(out.stderr)}")
    return parse_df(path, out.stdout)


# --- the scheduled jobs' status files ------------------------------------------------------

# Reads every *.json of the status directory into one JSON object; {} when there is none.
_READ_STATUS = """
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
out = {}
for p in sorted(d.glob("*.json")) if d.is_dir() else []:
    try:
        out[p.name] = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        out[p.name] = {"unreadable": str(exc)}
print(json.dumps(out))
"""


def status_files(target: Target) -> tuple[str, dict[str, Any]]:
    """(status directory, {file name: content}) of the backup and maintenance jobs."""
    directory = backup_settings(Data(target.inv.data)).status_dir
    out = target.host.run(f"python3 -c {shlex.quote(_READ_STATUS)} {shlex.quote(directory)}")
    if out.rc != 0:
        raise QueryError(f"reading {directory} failed on {target.name}: "
                         f"{last_line(out.stderr)}")
    return directory, json.loads(out.stdout.strip() or "{}")


# --- services and PgBouncer --------------------------------------------------------------------

def service_active(target: Target, unit: str) -> bool:
    return target.host.run(f"systemctl is-active --quiet {shlex.quote(unit)}").rc == 0


def ca_file() -> Path:
    return secrets.secrets_dir() / "ca" / "ca.crt"


def pgbouncer_console(target: Target, commands: tuple[str, ...] = ("SHOW POOLS",
                                                                   "SHOW DATABASES")
                      ) -> dict[str, list[Row]]:
    """SHOW ... results from PgBouncer's console over TLS, as the monitoring role (a
    stats_user). Raises psycopg.Error or secrets.SecretError."""
    dsn = psycopg.conninfo.make_conninfo(
        host=target.inv.address, port=pgbouncer_port(Data(target.inv.data)), dbname="pgbouncer",
        user=MONITOR_ROLE, password=secrets.password(MONITOR_ROLE, generate=False),
        sslmode="verify-full", sslrootcert=str(ca_file()), connect_timeout=5)
    out: dict[str, list[Row]] = {}
    # The console speaks the simple query protocol only: no parameters, nothing prepared.
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        for command in commands:
            cur = conn.execute(command)
            names = [c.name for c in cur.description or []]
            out[command] = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return out
