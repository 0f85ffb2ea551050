"""PgBouncer on every database host: pooled, TLS for clients, SCRAM via auth_query, no plaintext.

How authentication works, and why it is built this way (PgBouncer 1.18, Debian 12):
- Clients authenticate with SCRAM against the verifier PostgreSQL stores; PgBouncer fetches it
  with `pgbouncer.user_search($1)` (sql/pgbouncer_auth.sql), logged in as the `pgbouncer` role.
  With a client's SCRAM keys it logs in to PostgreSQL for that client (pass-through), over the
  local socket.
- PgBouncer cannot log in with a SCRAM verifier on its own behalf, so the `pgbouncer` role
  authenticates by `peer` (the OS user postgres, mapped to the role in pg_ident.conf): no password
  of any kind is needed on the host for that login.
- auth_user is set per database: a global one lets any client crash 1.18 by connecting to the
  admin console as an unknown user. The console does not use auth_query, so the console users
  (stats_users: the monitor) are in auth_file, as SCRAM verifiers only, identical to the ones
  PostgreSQL stores (pass-through needs the same salt).
- Those verifiers are deterministic: the salt is an HMAC of the role and its password under a
  random key in the secrets directory. So a second deploy changes nothing, a new password gets a
  new salt, and primary and replicas carry the same verifier without reading each other.
- On a standby nothing is written: roles, passwords and the function arrive by replication.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from io import StringIO
from pathlib import Path
from typing import NamedTuple

from pyinfra import host
from pyinfra.api import StringCommand, deploy, operation
from pyinfra.api.command import MaskString
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import files, server, systemd

from deploy import aptbatch, hostfacts, pgsql, postgres, scram, secrets, uploads
from deploy.render import as_file, render
from deploy.roles import login_roles
from deploy.settings import AppSettings, Data, PgBouncerSettings, PostgresSettings, ha_settings

CONF_DIR = "/etc/pgbouncer"
INI = f"{CONF_DIR}/pgbouncer.ini"
AUTH_FILE = f"{CONF_DIR}/userlist.txt"
DROP_IN = "/etc/systemd/system/pgbouncer.service.d/bgdb.conf"
PACKAGE_UNIT = "/lib/systemd/system/pgbouncer.service"  # Debian 12 and 13 ship one
NATIVE_UNIT = "/etc/systemd/system/pgbouncer.service"
TLS_FINGERPRINT = "/etc/pgbouncer/bgdb-tls.sha256"
UNIT = "pgbouncer"
IDENT_MAP = "bgdb_pgbouncer"
SALT_KEY = "pgbouncer-salt-key"  # in the secrets directory, generated on first use
AUTH_SQL = Path(__file__).resolve().parent.parent / "sql" / "pgbouncer_auth.sql"
# Settings PgBouncer reads only at start: a change to them needs a restart, not a reload.
RESTART_KEYS = ("listen_addr", "listen_port", "unix_socket_dir", "unix_socket_mode")
_ENTRY = re.compile(r'^"(?P<user>[^"]+)"\s+"(?P<secret>[^"]*)"\s*$')


class TlsFiles(NamedTuple):
    cert: str
    key: str
    ca: str

LOGFILE = "/var/log/postgresql/pgbouncer.log"


def tls_files(pg: PostgresSettings) -> TlsFiles:
    """The server certificate the PostgreSQL deploy uploads; pgbouncer runs as postgres."""
    return TlsFiles(f"{pg.conf_dir}/bgdb-server.crt", f"{pg.conf_dir}/bgdb-server.key",
                    f"{pg.conf_dir}/bgdb-ca.crt")


def listen_addresses(bouncer: PgBouncerSettings, service_address: str) -> list[str]:
    return list(bouncer.listen_addresses) or [service_address, "127.0.0.1"]


# PgBouncer keeps protocol-level prepared statements across transaction pooling from 1.21 on.
PREPARED_STATEMENTS_SINCE = (1, 21)


def supports_prepared_statements(package_version: str) -> bool:
    """Whether a Debian pgbouncer package version ('1.24.1-1', '1.18.0-1') is 1.21 or newer."""
    m = re.match(r"^(?:\d+:)?(\d+)\.(\d+)", package_version)
    return m is not None and (int(m[1]), int(m[2])) >= PREPARED_STATEMENTS_SINCE


def render_ini(bouncer: PgBouncerSettings, pg: PostgresSettings, service_address: str,
               prepared_statements: bool = False, floating: Sequence[str] = ()) -> str:
    """prepared_statements: the host's PgBouncer knows max_prepared_statements (1.21+);
    floating: HA mode's floating addresses, which a member may hold (deploy/ha.py)."""
    listen = listen_addresses(bouncer, service_address) + list(floating)
    return render("pgbouncer.ini.j2", bouncer=bouncer, pg=pg, tls=tls_files(pg),
                  listen=listen, auth_file=AUTH_FILE,
                  max_prepared=bouncer.max_prepared_statements if prepared_statements else 0)


def restart_settings(ini_lines: list[str] | None) -> dict[str, str]:
    """The settings of an ini file that only a restart applies (None: no file yet)."""
    found: dict[str, str] = {}
    for line in ini_lines or []:
        key, sep, value = line.partition("=")
        if sep and key.strip() in RESTART_KEYS:
            found[key.strip()] = value.strip()
    return found


def parse_auth_file(lines: list[str] | None) -> dict[str, str]:
    entries = {}
    for line in lines or []:
        m = _ENTRY.match(line.strip())
        if m:
            entries[m["user"]] = m["secret"]
    return entries


def auth_verifier(role: str, password: str) -> str:
    """The SCRAM verifier both PostgreSQL and auth_file hold for `role`: its salt is
    HMAC-SHA256(secret key, role:password), so it is stable while the password is, and nobody
    without the key can test password guesses against the salt."""
    key = secrets.password(SALT_KEY).encode()
    salt = hmac.new(key, f"{role}:{password}".encode(), hashlib.sha256).digest()[:16]
    return scram.verifier(password, salt)


def _in_recovery(port: int) -> bool:
    return pgsql.rows("SELECT pg_is_in_recovery()", port=port) == [["t"]]


def sql_checksum() -> str:
    return hashlib.sha256(AUTH_SQL.read_bytes()).hexdigest()[:16]


def auth_objects_ok_query(auth_user: str) -> str:
    """One row 't' when the lookup function, its schema and grants are exactly as deployed."""
    fn = "to_regprocedure('pgbouncer.user_search(text)')"
    role = pgsql.literal(auth_user)
    return (
        "SELECT p.prosecdef AND p.proowner = 'postgres'::regrole AND n.nspowner = p.proowner"
        f" AND obj_description(p.oid, 'pg_proc') = {pgsql.literal('bgdb:' + sql_checksum())}"
        " AND NOT has_function_privilege('public', p.oid, 'EXECUTE')"
        " AND NOT has_schema_privilege('public', n.oid, 'USAGE')"
        " AND (SELECT count(*) FROM aclexplode(p.proacl) a WHERE a.privilege_type = 'EXECUTE'"
        f"      AND a.grantee NOT IN (p.proowner, {role}::regrole)) = 0"
        f" AND has_function_privilege({role}, p.oid, 'EXECUTE')"
        f" AND has_database_privilege({role}, current_database(), 'CONNECT')"
        f" FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = {fn}"
    )


@operation()
def auth_function(database: str, auth_user: str, port: int = 5432):
    """Create or repair PgBouncer's lookup function in `database`, only when it differs."""
    found = pgsql.rows(auth_objects_ok_query(auth_user), database=database, port=port)
    if found == [["t"]] or _in_recovery(port):
        return
    stamp = (f"COMMENT ON FUNCTION pgbouncer.user_search(text) IS "
             f"{pgsql.literal('bgdb:' + sql_checksum())};")
    yield pgsql.psql(AUTH_SQL.read_text() + "\n" + stamp, database=database, port=port)


@operation()
def role_verifier(role_name: str, verifier: str, port: int = 5432):
    """Store exactly `verifier` as the role's password, the one auth_file carries too (SCRAM
    pass-through needs the same salt on both sides); masked in pyinfra's output."""
    stored = pgsql.rows(f"SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = "
                        f"{pgsql.literal(role_name)}", port=port)
    if (stored and stored[0] and stored[0][0] == verifier) or _in_recovery(port):
        return
    sql = f"ALTER ROLE {pgsql.ident(role_name)} PASSWORD {pgsql.literal(verifier)}"
    yield StringCommand(MaskString(pgsql.psql(sql, port=port)))


@deploy("Install and configure PgBouncer")
def install_pgbouncer(pg: PostgresSettings, app: AppSettings, bouncer: PgBouncerSettings,
                      sql_if: Callable[[], bool] | None = None) -> None:
    """sql_if: HA mode's "this host leads now" (roles are created there only)."""
    address = str(host.data.get("service_address"))
    aptbatch.install(name="Install PgBouncer", packages=["pgbouncer"], no_recommends=True)

    # The auth_user and the console users, with verifiers pinned to what auth_file carries.
    envs = login_roles(app)
    entries = []
    for role in (bouncer.auth_user, *bouncer.console_users):
        pgsql.role(name=f"Create role {role}", role_name=role, login=True, port=pg.port,
                   attributes="NOSUPERUSER NOINHERIT CONNECTION LIMIT 20", _if=sql_if)
        password = secrets.password(role, env=envs.get(role) or None)
        verifier = auth_verifier(role, password)
        role_verifier(name=f"Set the password of {role} (the verifier auth_file carries)",
                      role_name=role, verifier=verifier, port=pg.port)
        entries.append((role, verifier))
    for db in bouncer.databases:
        auth_function(name=f"Create the auth_query function pgbouncer.user_search in {db}",
                      database=db, auth_user=bouncer.auth_user, port=pg.port)
    if not pg.ha:  # Patroni writes pg_ident.conf from its configuration (deploy/ha_config.py)
        ident = files.line(name="Map the OS user postgres to the pgbouncer role (peer login)",
                           path=f"{pg.conf_dir}/pg_ident.conf", line=rf"^{IDENT_MAP}\s.*$",
                           replace=f"{IDENT_MAP}  postgres  {bouncer.auth_user}")
        server.shell(name="Reload PostgreSQL for the ident map",
                     commands=[f"systemctl reload {pg.unit}"], _if=ident.did_change)

    # From the package apt installs (its candidate): 1.18 would refuse an unknown key.
    candidate = host.get_fact(hostfacts.AptCandidate, package="pgbouncer")
    if not candidate:
        raise DeployError(f"{host.name}: apt has no pgbouncer to install (`apt-cache policy "
                          "pgbouncer` names no candidate): are its package lists fetched?")
    floating = ha_settings(Data(host.data.dict())).floating if pg.ha else []
    ini = render_ini(bouncer, pg, address, supports_prepared_statements(candidate), floating)
    restart_needed = restart_settings(host.get_fact(FileContents, path=INI)) != \
        restart_settings(ini.splitlines())
    unit = uploads.put(name="Install the PgBouncer unit drop-in (file limit, restart on failure)",
                       src=as_file("pgbouncer.service.conf.j2", bouncer=bouncer), dest=DROP_IN,
                       mode="0644", create_remote_dir=True)
    def init_script_only() -> bool:
        return not host.get_fact(File, path=PACKAGE_UNIT)

    native = uploads.put(name="Install a native PgBouncer unit (the package has an init script)",
                         src=as_file("pgbouncer.service.j2"), dest=NATIVE_UNIT, mode="0644",
                         _if=init_script_only)
    # By state, not by change: a deploy that failed after writing the unit left it unloaded.
    server.shell(name="Load the native PgBouncer unit", commands=["systemctl daemon-reload"],
                 _if=lambda: init_script_only()
                 and host.get_fact(hostfacts.UnitProperty, unit=UNIT, prop="FragmentPath")
                 != NATIVE_UNIT)
    conf = uploads.put(name="Write pgbouncer.ini", src=StringIO(ini), dest=INI, user="root",
                       group="postgres", mode="0640")
    # PgBouncer reads its TLS files at start and reload only: a renewed certificate (new
    # addresses, expiry) needs a reload, which a fingerprint of it here triggers.
    cert = postgres.server_certificate(pg, address)
    tls = uploads.put(name="Record the certificate PgBouncer serves",
                      src=StringIO(hashlib.sha256(cert.cert_pem.encode()).hexdigest() + "\n"),
                      dest=TLS_FINGERPRINT, mode="0644")
    users = uploads.put(name="Write the auth file (SCRAM verifiers only)",
                        src=as_file("pgbouncer-userlist.txt.j2", entries=entries), dest=AUTH_FILE,
                        user="root", group="postgres", mode="0640")
    # The package's first start (its stock ini) leaves this world-readable; ours logs to the
    # journal, a logfile an operator adds lands in it: 0640 like PostgreSQL's own Debian log.
    files.file(name=f"Make {LOGFILE} unreadable to others", path=LOGFILE, user="postgres",
               group="adm", mode="0640")
    systemd.service(name="Keep PgBouncer running and enabled", service=UNIT, running=True,
                    enabled=True)

    def restart() -> bool:
        return unit.did_change() or native.did_change() or (conf.did_change() and restart_needed)

    server.shell(name="Restart PgBouncer (unit or listen addresses changed)",
                 commands=["systemctl daemon-reload", f"systemctl restart {UNIT}"], _if=restart)
    server.shell(name="Reload PgBouncer (clients stay connected)",
                 commands=[f"systemctl reload-or-restart {UNIT}"],
                 _if=lambda: (conf.did_change() or users.did_change() or tls.did_change())
                 and not restart())

