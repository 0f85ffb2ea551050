"""Database, extensions, the bundle's roles and their passwords (set idempotently via SCRAM)."""

from __future__ import annotations

from pyinfra.api import deploy

from deploy import pgsql, secrets
from deploy.settings import AppSettings, PostgresSettings

OWNER = "bg_agents_owner"
READONLY = "bg_agents_readonly"
MONITOR = "bg_agents_monitor"
ADMIN = "bgdb_admin"


def login_roles(app: AppSettings) -> dict[str, str]:
    """Login role -> where its password comes from (the app's may come from the environment)."""
    return {app.user: "POSTGRESQL_PASSWORD", READONLY: "", MONITOR: ""}


@deploy("Create the database, roles and passwords")
def configure_roles(pg: PostgresSettings, app: AppSettings) -> None:
    port = pg.port
    pgsql.role(name=f"Create role {OWNER}", role_name=OWNER, login=False, port=port)
    pgsql.database(name=f"Create database {app.database}", db=app.database, owner=OWNER,
                   port=port)
    pgsql.extension(name="Create extension pg_stat_statements", ext="pg_stat_statements",
                    database_name=app.database, port=port)
    if pg.pgaudit:
        # pgaudit logs by preload alone; the extension's event triggers add the object type
        # and name to DDL lines (pgaudit README, "Settings"). Replicas get it by replication.
        pgsql.extension(name="Create extension pgaudit", ext="pgaudit",
                        database_name=app.database, port=port)
    for role, env in login_roles(app).items():
        limit = f"CONNECTION LIMIT {pg.app_connection_limit}" if role == app.user else \
            "CONNECTION LIMIT 20"
        pgsql.role(name=f"Create role {role}", role_name=role, login=True, port=port,
                   attributes=limit)
        pgsql.role_password(name=f"Set the password of {role}", role_name=role,
                            password=secrets.password(role, env=env or None), port=port)
    if pg.admin_cidrs:
        pgsql.role(name=f"Create break-glass role {ADMIN}", role_name=ADMIN, login=True,
                   port=port, attributes="SUPERUSER CONNECTION LIMIT 5")
        pgsql.role_password(name=f"Set the password of {ADMIN}", role_name=ADMIN,
                            password=secrets.password(ADMIN), port=port)
