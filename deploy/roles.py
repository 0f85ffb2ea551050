"""Database, extensions, the bundle's roles and their passwords (set idempotently via SCRAM)."""

from __future__ import annotations

from pyinfra.api import deploy

from deploy import pgsql, secrets
from deploy.settings import AppSettings, PostgresSettings

OWNER = "bg_agents_owner"
READONLY = "bg_agents_readonly"
MONITOR = "bg_agents_monitor"
OPS = "bg_agents_ops"  # the humans' troubleshooting login (pg_monitor, no table privileges)
ADMIN = "bgdb_admin"


def login_roles(app: AppSettings) -> dict[str, str]:
    """Login role -> where its password comes from (the app's may come from the environment)."""
    return {app.user: "POSTGRESQL_PASSWORD", READONLY: "", MONITOR: "", OPS: ""}


@deploy("Create the database, roles and passwords")
def configure_roles(pg: PostgresSettings, app: AppSettings, app_role_limit: int) -> None:
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
    if pg.set_user_installed:
        # CIS 4.8: escalation through set_user()/set_user_u() is logged; its script revokes
        # EXECUTE from PUBLIC, so only roles granted it (none by default) may escalate.
        pgsql.extension(name="Create extension set_user", ext="set_user",
                        database_name=app.database, port=port)
    for role, env in login_roles(app).items():
        limit = f"CONNECTION LIMIT {app_role_limit}" if role == app.user else \
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
    else:
        # CIS 4.3: no superuser that nobody may use. It owns nothing (it only logs in).
        pgsql.run_if(name=f"Drop break-glass role {ADMIN} (postgres_admin_cidrs is empty)",
                     sql=f"DROP ROLE {ADMIN}", port=port,
                     when=f"SELECT count(*) > 0 FROM pg_roles WHERE rolname = '{ADMIN}'")
    su_limit = pg.superuser_connection_limit
    pgsql.run_if(name=f"Set the postgres role's connection limit to {su_limit} (CIS 5.5)",
                 sql=f"ALTER ROLE postgres CONNECTION LIMIT {su_limit}", port=port,
                 when=f"SELECT rolconnlimit <> {su_limit} FROM pg_roles WHERE rolname = 'postgres'")
    for db in ("postgres", "template1"):
        # CIS 4.10: PUBLIC creates nothing in public (PostgreSQL 15 revokes it in new
        # databases; 13's template1 and postgres still grant it). roles.sql does the app's.
        pgsql.run_if(name=f"Revoke CREATE on schema public in {db} from PUBLIC (CIS 4.10)",
                     sql="REVOKE CREATE ON SCHEMA public FROM PUBLIC", database=db, port=port,
                     when="SELECT has_schema_privilege('public', 'public', 'CREATE')")
