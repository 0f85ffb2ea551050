"""`bgdb connect`: pgcli on a database host, as one of the bundle's login roles, over TLS.

The DSN verifies the server's certificate against the bundle's CA (sslmode=verify-full). The
password never appears on a command line, in the environment or in shell history: it goes into a
temporary PGPASSFILE (mode 0600, in a private directory) that libpq reads, removed when pgcli
exits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bgdb.monitoring import MONITOR_ROLE, ca_file
from bgdb.targets import OperatorError, tcp_open
from deploy import secrets
from deploy.hostdata import InventoryHost
from deploy.settings import AppSettings, Data, app_settings, pgbouncer_port, postgres_settings

ROLES = ("app", "readonly", "monitor", "ops")
READONLY_ROLE = "bg_agents_readonly"
OPS_ROLE = "bg_agents_ops"  # troubleshooting: every session's query text, no table


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    database: str
    user: str
    password_env: str | None  # where else the password may come from ($POSTGRESQL_PASSWORD)

    def dsn(self, ca: Path) -> str:
        return (f"host={self.host} port={self.port} dbname={self.database} user={self.user} "
                f"sslmode=verify-full sslrootcert={ca} application_name=bgdb-connect "
                "connect_timeout=10")


def role_name(role: str, app: AppSettings) -> tuple[str, str | None]:
    """The login role behind --role, and the environment variable its password may come from."""
    if role == "app":
        return app.user, app.password_env
    if role == "readonly":
        return READONLY_ROLE, None
    if role == "monitor":
        return MONITOR_ROLE, None
    if role == "ops":
        return OPS_ROLE, None
    raise OperatorError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")


def endpoint(inv: InventoryHost, role: str, via: str | None) -> Endpoint:
    data = Data(inv.data)
    app = app_settings(data)
    port = pgbouncer_port(data) if via == "pgbouncer" else postgres_settings(data).port
    user, env = role_name(role, app)
    return Endpoint(inv.address, port, app.database, user, env)


def _pgpass_field(value: str | int) -> str:
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def pgpass_line(ep: Endpoint, password: str) -> str:
    """One .pgpass entry: host:port:database:user:password, ':' and '\\' escaped."""
    return ":".join(_pgpass_field(v) for v in (ep.host, ep.port, ep.database, ep.user,
                                                password)) + "\n"


@contextmanager
def pgpass_file(ep: Endpoint, password: str) -> Iterator[Path]:
    """A private PGPASSFILE for the duration of the block, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="bgdb-connect-"))  # 0700
    path = directory / "pgpass"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pgpass_line(ep, password))
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def pgcli_binary() -> str:
    beside = Path(sys.executable).parent / "pgcli"
    found = str(beside) if beside.exists() else shutil.which("pgcli")
    if not found:
        raise OperatorError("pgcli is not installed: `make setup` installs it into .venv")
    return found


def command(ep: Endpoint, ca: Path, extra: list[str]) -> list[str]:
    # -w: never prompt; a wrong or missing password is an error, not a question.
    return [pgcli_binary(), "-w", *extra, ep.dsn(ca)]


def _ignore(signum: int, frame: object) -> None:
    pass


def run(inv: InventoryHost, role: str, via: str | None, extra: list[str],
        env: Mapping[str, str] | None = None) -> int:
    ep = endpoint(inv, role, via)
    ca = ca_file()
    if not ca.is_file():
        raise OperatorError(f"the bundle's CA certificate {ca} is missing: run `bgdb deploy` "
                            "first (or set BGDB_SECRETS_DIR)")
    password = secrets.password(ep.user, env=ep.password_env, generate=False)
    why = tcp_open(ep.host, ep.port)
    if why:
        what = "PgBouncer" if via == "pgbouncer" else "PostgreSQL"
        hint = " (is PgBouncer deployed on it?)" if via == "pgbouncer" else ""
        raise OperatorError(f"{what} on {inv.name} ({ep.host}:{ep.port}) is unreachable: "
                            f"{why}{hint}")
    child_env = dict(os.environ if env is None else env)
    child_env.pop("PGPASSWORD", None)  # it would win over the file
    with pgpass_file(ep, password) as passfile:
        child_env["PGPASSFILE"] = str(passfile)
        # pgcli handles Ctrl-C itself (it cancels the query); this process must not die of it
        # and leave the password file behind. A handler, not SIG_IGN: an ignored signal would
        # stay ignored in pgcli too, a handler is reset to the default by exec.
        previous = signal.signal(signal.SIGINT, _ignore)
        try:
            return subprocess.call(command(ep, ca, extra), env=child_env)
        finally:
            signal.signal(signal.SIGINT, previous)
