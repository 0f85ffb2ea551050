"""pyinfra entry point: `pyinfra inventory.py deploy.py`. Dispatches by group; every concern is
built from validated settings before any operation runs on any host."""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError

from deploy import (
    backup,
    exporter,
    factcache,
    ha,
    ha_config,
    hostfacts,
    maintenance,
    monitoring,
    nodelay,
    opstack,
    pgbadger,
    pgbouncer,
    postgres,
    replica,
    roles,
    schema,
    upgrades,
)
from deploy.monitoring_config import monitoring_settings
from deploy.settings import (
    Data,
    SettingsError,
    app_role_connection_limit,
    app_settings,
    backup_settings,
    exporter_settings,
    ha_settings,
    maintenance_settings,
    pgbouncer_settings,
    replica_settings,
    upgrade_settings,
)

nodelay.install()  # no ~40 ms Nagle/delayed-ACK wait per command
factcache.install()  # facts gathered once per host until a command changes it
opstack.install()  # operation order from line numbers without reading source files
data = Data(host.data.dict())
app = app_settings(data)

# Security updates' configuration before any install: unattended-upgrades is installed with the
# host's other packages (deploy/aptbatch.py); its timers are enabled last.
if {"postgres_primary", "postgres_replicas", "backup"} & set(host.groups):
    upgrades.write_config(upgrade_settings(data))

# HA mode (postgres_ha): every database host is a Patroni member; whoever leads now gets the
# roles and the schema, asked from Patroni when the operations run (deploy/ha.py).
HA = {"postgres_primary", "postgres_replicas"} & set(host.groups) and ha_settings(data).enabled

if {"postgres_primary", "postgres_replicas"} & set(host.groups):
    # The PostgreSQL major follows the host's distribution unless set; a set one that this
    # host cannot install, or HA mode on a release that cannot run it, stops here, before any
    # operation.
    try:
        pg = rpg = hostfacts.host_postgres(host)
        hostfacts.check_installable(pg, host)
        if HA:
            hostfacts.check_ha_release(host.get_fact(hostfacts.Facts), host.name)
    except SettingsError as exc:
        raise DeployError(str(exc)) from None  # pyinfra prints it as one line

if HA:
    has, bk = ha_settings(data), backup_settings(data)
    members = ha.members_of([*inventory.get_group("postgres_primary", []),
                             *inventory.get_group("postgres_replicas", [])])
    leads = ha.install_ha(pg, app, has, members,
                          is_bootstrap="postgres_primary" in host.groups)
    bouncer = pgbouncer_settings(data, app, pg)
    role_limit = app_role_connection_limit(pg, bouncer)
    roles.configure_roles(pg, app, role_limit, _if=leads)
    pgbouncer.install_pgbouncer(pg, app, bouncer, sql_if=leads)
    schema.apply_migrations(pg, app, role_limit, apply_if=leads)
    me = next(m for m in members if m.name == host.name)
    exporter.install_exporter(exporter_settings(data, pg), pg, app, bk.status_file,
                              patroni_url=ha.rest_url(has, me.address, "/patroni"))
    # Partitions ahead, retention, ANALYZE: timers on every member, run by the leader only.
    maintenance.configure_maintenance(maintenance_settings(data), bk, pg, app,
                                      after=f"{ha_config.unit(pg)}.service")

if "postgres_primary" in host.groups and not HA:
    replica_hosts = inventory.get_group("postgres_replicas", [])
    replicas = [str(h.data.get("service_address")) for h in replica_hosts]
    postgres.install_postgres(pg, app, replicas)
    bouncer = pgbouncer_settings(data, app, pg)
    role_limit = app_role_connection_limit(pg, bouncer)
    roles.configure_roles(pg, app, role_limit)
    pgbouncer.install_pgbouncer(pg, app, bouncer)
    schema.apply_migrations(pg, app, role_limit)

# WAL archiving and backups: on the primary alone (local repository), or on the primary (in HA
# mode every member) and the backup host together (one call for all, so pyinfra orders their
# steps: backup.py). In HA mode the backup host lists every member; the leader archives.
if backup.takes_part(host, bool(HA)):
    backup.configure_backup(*backup.setup_for(host, inventory), leads=leads if HA else None,
                            bootstrap="postgres_primary" in host.groups)

if "postgres_primary" in host.groups and not HA:
    bk = backup_settings(data)
    maintenance.configure_maintenance(maintenance_settings(data), bk, pg, app)
    exporter.install_exporter(exporter_settings(data, pg), pg, app, bk.status_file)
    replica.configure_primary(pg, replica_settings(data), [h.name for h in replica_hosts])

# Read replicas: what needs no primary first (it runs alongside the primary's deploy), then one
# operation shared with the primary, after which everything else (the copy) runs.
if "postgres_replicas" in host.groups and not HA:
    primary_host = inventory.get_group("postgres_primary")[0]
    rs = replica_settings(data)
    topo = replica.topology(primary_host, inventory.get_group("postgres_replicas"))
    replica.prepare_replica(rpg, app, rs, topo, primary_host)
if {"postgres_primary", "postgres_replicas"} & set(host.groups) and not HA:
    replica.wait_for_primary()
if "postgres_replicas" in host.groups and not HA:
    replica.start_replica(rpg, rs, topo)
    # Roles, passwords and PgBouncer's auth function arrive by replication: the same database
    # entry, served read-only by the standby.
    pgbouncer.install_pgbouncer(rpg, app, pgbouncer_settings(data, app, rpg))
    exporter.install_exporter(exporter_settings(data, rpg), rpg, app, None)

# Security updates on every database and backup host: their timers after everything else.
if {"postgres_primary", "postgres_replicas", "backup"} & set(host.groups):
    upgrades.configure_upgrades(upgrade_settings(data))

# Node exporters on database and backup hosts; Prometheus and Alertmanager on `monitoring`
# hosts (a database host in small setups), after its database deploy.
if {"postgres_primary", "postgres_replicas", "backup"} & set(host.groups):
    monitoring.install_node_exporter(monitoring_settings(data))
if {"postgres_primary", "postgres_replicas"} & set(host.groups):
    pgbadger.install_pgbadger(pgbadger.pgbadger_settings(data), pg)
if "monitoring" in host.groups:
    monitoring.install_monitoring(monitoring_settings(data), inventory)
