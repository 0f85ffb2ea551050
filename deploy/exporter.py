"""The bgdb Prometheus exporter (exporters/) as a hardened systemd service on the database host.

It runs with the distribution's python3, psycopg 3 (deploy/pylibs.py) and
python3-prometheus-client (no pip on the host)
as the system user bgdb-exporter, and logs in as bg_agents_monitor over the local socket (pg_hba:
scram-sha-256), to PostgreSQL and to PgBouncer's admin console. The password is in a libpq
passfile owned by that user alone (libpq ignores a passfile that others can read); the JSON
configuration next to it holds no secret. The service is restarted only when one of its files
changed, so a deploy that changes nothing leaves it running.
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import bcrypt
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import files, server, systemd

from deploy import accounts, aptbatch, jobs, postgres, secrets, uploads
from deploy.render import as_file
from deploy.roles import MONITOR
from deploy.settings import (
    AppSettings,
    Data,
    ExporterSettings,
    PostgresSettings,
    pgbouncer_port,
)

BCRYPT_COST = 10  # exporter-toolkit's examples; checked once per credentials (exporters/http.py)
USER = "bgdb-exporter"
UNIT = "bgdb-exporter"
UNIT_FILE = f"/etc/systemd/system/{UNIT}.service"
CONF_DIR = "/etc/bgdb-exporter"
CONFIG = f"{CONF_DIR}/config.json"
PASSFILE = f"{CONF_DIR}/pgpass"
TLS_CERT = f"{CONF_DIR}/tls.crt"
TLS_KEY = f"{CONF_DIR}/tls.key"
REMOTE = jobs.REMOTE  # /usr/local/lib/bgdb: bgdb/ and sql/ of the other deploys live there too
SOCKET_DIR = "/var/run/postgresql"
SCRAPE_SECRET = "bgdb-exporter-scrape"  # basic auth password for Prometheus, when enabled
# psycopg 3: deploy/pylibs.py, with PostgreSQL; bcrypt checks the scrape password.
PACKAGES = ["python3-prometheus-client", "python3-bcrypt"]
_PYTHON_JUNK = ["*.pyc", "*.pyo"]
_PYTHON_JUNK_DIRS = ["__pycache__", "*/__pycache__"]


def listen_address(ex: ExporterSettings, service_address: str) -> str:
    return ex.listen_address or service_address


def dsn(port: int, dbname: str) -> str:
    """A local-socket DSN as the monitor role; the password comes from the passfile."""
    return (f"host={SOCKET_DIR} port={port} dbname={dbname} user={MONITOR} "
            f"passfile={PASSFILE}")


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def passfile(entries: list[tuple[int, str]], password: str) -> str:
    """libpq passfile lines for the monitor role, one per (port, database); host `*` matches
    the local socket whatever libpq's default socket directory is."""
    lines = ["# Managed by background-agents-db: the exporter's logins (libpq passfile)."]
    lines += [f"*:{port}:{_pgpass_field(db)}:{MONITOR}:{_pgpass_field(password)}"
              for port, db in entries]
    return "\n".join(lines) + "\n"


def exporter_config(ex: ExporterSettings, pg: PostgresSettings, app: AppSettings, *,
                    service_address: str, bouncer_port: int | None,
                    backup_status_file: str | None,
                    basic_auth_password: str | None = None,
                    current_hash: str | None = None,
                    patroni_url: str | None = None) -> dict[str, Any]:
    """The exporter's config.json (exporters/config.py's keys); no secret in it."""
    cfg: dict[str, Any] = {
        "listen_address": listen_address(ex, service_address),
        "port": ex.port,
        "dsn": dsn(pg.port, app.database),
        "pgbouncer_dsn": dsn(bouncer_port, "pgbouncer") if bouncer_port else None,
        "heartbeat_interval_seconds": ex.heartbeat_interval_seconds,
        "max_agents": ex.max_agents,
        "statement_timeout_seconds": ex.statement_timeout_seconds,
        "scrape_timeout_seconds": ex.scrape_timeout_seconds,
        "long_query_seconds": ex.long_query_seconds,
        "top_tables": ex.top_tables,
        "max_label_values": ex.max_label_values,
        "sql_dir": f"{REMOTE}/sql/exporter",
        "backup_status_file": backup_status_file,
        "log_level": ex.log_level,
    }
    if patroni_url:  # HA mode: the member's Patroni (exporters/patroni.py)
        cfg["patroni_url"] = patroni_url
    if ex.agent_heartbeat_cache_seconds is not None:  # else the exporter's own default
        cfg["agent_heartbeat_cache_seconds"] = ex.agent_heartbeat_cache_seconds
    if ex.basic_auth_user and basic_auth_password:
        cfg["basic_auth_username"] = ex.basic_auth_user
        cfg["basic_auth_password_bcrypt"] = password_hash(basic_auth_password, current_hash)
    if ex.tls:
        cfg["tls_cert_file"] = TLS_CERT
        cfg["tls_key_file"] = TLS_KEY
    return cfg


def password_hash(password: str, current: str | None) -> str:
    """bcrypt, as exporter-toolkit's web config; the host's hash is kept while it still matches
    (a new salt on every deploy would rewrite the file and restart the exporter)."""
    if current:
        try:
            if bcrypt.checkpw(password.encode("utf-8"), current.encode("ascii")):
                return current
        except ValueError:
            pass
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()


def current_password_hash(config_text: list[str] | None) -> str | None:
    """basic_auth_password_bcrypt from the host's config.json (None when absent/unreadable)."""
    try:
        value = json.loads("\n".join(config_text or [])).get("basic_auth_password_bcrypt")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def render_config(cfg: dict[str, Any]) -> str:
    return json.dumps(cfg, indent=2, sort_keys=True) + "\n"


def scrape_password(ex: ExporterSettings) -> str | None:
    return secrets.password(SCRAPE_SECRET) if ex.basic_auth_user else None


@deploy("Install the bgdb exporter")
def install_exporter(ex: ExporterSettings, pg: PostgresSettings, app: AppSettings,
                     backup_status_file: str | None = None, patroni_url: str | None = None
                     ) -> None:
    if not ex.enabled:
        server.shell(name="Stop and disable the exporter (exporter_enabled is False)",
                     commands=[f"systemctl disable --now {UNIT}"],
                     _if=lambda: bool(host.get_fact(File, path=UNIT_FILE)))
        return
    address = str(host.data.get("service_address"))
    aptbatch.install(name="Install the exporter's Python packages", packages=PACKAGES,
                     cache_time=86400, no_recommends=True)
    # A member of the socket's group (CIS 2.6: the socket is 0770): it logs in over it.
    account = accounts.system_user(name=f"Create the system user {USER}", user=USER,
                                   shell="/usr/sbin/nologin", home="/nonexistent",
                                   comment="bgdb Prometheus exporter",
                                   groups=[postgres.SOCKET_GROUP])

    # Only our two subdirectories: bgdb/, sql/migrations, sql/maintenance beside them belong to
    # the other deploys, and a sync of the parent with delete=True would remove them.
    code = uploads.sync(name="Upload the exporter package", src=str(jobs.REPO / "exporters"),
                        dest=f"{REMOTE}/exporters", delete=True, mode="0644", dir_mode="0755",
                        exclude=_PYTHON_JUNK, exclude_dir=_PYTHON_JUNK_DIRS)
    sql = uploads.sync(name="Upload the exporter's SQL", src=str(jobs.REPO / "sql" / "exporter"),
                       dest=f"{REMOTE}/sql/exporter", delete=True, mode="0644", dir_mode="0755")
    files.directory(name=f"Create {CONF_DIR}", path=CONF_DIR, user="root", group=USER,
                    mode="0750")
    bouncer_port = pgbouncer_port(Data(host.data.dict())) if ex.pgbouncer else None
    password = secrets.password(MONITOR)
    entries = [(pg.port, app.database)] + ([(bouncer_port, "pgbouncer")] if bouncer_port else [])
    # libpq refuses a passfile that group or others can read: owned by the exporter, 0600.
    pgpass = uploads.put(name="Write the exporter's passfile (monitor role)",
                         src=StringIO(passfile(entries, password)), dest=PASSFILE, user=USER,
                         group=USER, mode="0600")
    tls_ops = []
    if ex.tls:
        cert = postgres.server_certificate(pg, address)  # the one PostgreSQL serves
        tls_ops = [
            uploads.put(name="Upload the exporter's TLS certificate",
                        src=StringIO(cert.cert_pem + cert.ca_pem), dest=TLS_CERT, user="root",
                        group=USER, mode="0644"),
            uploads.put(name="Upload the exporter's TLS key", src=StringIO(cert.key_pem),
                        dest=TLS_KEY, user="root", group=USER, mode="0640"),
        ]
    cfg = exporter_config(ex, pg, app, service_address=address, bouncer_port=bouncer_port,
                          backup_status_file=backup_status_file if ex.backup_status else None,
                          basic_auth_password=scrape_password(ex),
                          current_hash=current_password_hash(
                              host.get_fact(FileContents, path=CONFIG)),
                          patroni_url=patroni_url)
    conf = uploads.put(name="Write the exporter's configuration",
                       src=StringIO(render_config(cfg)), dest=CONFIG, user="root", group=USER,
                       mode="0640")
    after = [f"{pg.unit}.service"] + (["pgbouncer.service"] if ex.pgbouncer else [])
    unit = uploads.put(name="Install the exporter's systemd unit",
                       src=as_file("bgdb-exporter.service.j2", user=USER, remote=REMOTE,
                                   config=CONFIG, after=after),
                       dest=UNIT_FILE, mode="0644")
    changed = [account, code, sql, pgpass, conf, unit, *tls_ops]
    server.shell(name="Restart the exporter (its files changed)",
                 commands=["systemctl daemon-reload", f"systemctl restart {UNIT}"],
                 _if=lambda: any(op.did_change() for op in changed))
    systemd.service(name="Keep the exporter running and enabled", service=UNIT, running=True,
                    enabled=True)
