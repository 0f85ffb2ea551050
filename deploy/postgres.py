"""PostgreSQL server: install, cluster, tuned drop-in, pg_hba, TLS, firewall, kernel settings."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from io import StringIO
from typing import Any

from pyinfra import host, inventory
from pyinfra.api import FactBase, deploy
from pyinfra.facts.server import Hostname
from pyinfra.operations import server, systemd

from deploy import aptbatch, backup, certs, hostfacts, pgsql, pylibs, uploads
from deploy.monitoring_config import NODE_EXPORTER_PORT, monitoring_addresses, monitoring_settings
from deploy.render import as_file
from deploy.settings import (
    AppSettings,
    Data,
    PostgresSettings,
    backup_settings,
    exporter_settings,
    ha_settings,
    pgbouncer_port,
)

APP_ROLES = ("bg_agents_user", "bg_agents_readonly")  # + the configured app user
CA_PATH = "/etc/bgdb/ca.crt"


def packages(pg: PostgresSettings) -> list[str]:
    audit = [f"postgresql-{pg.version}-pgaudit"] if pg.pgaudit else []
    set_user = [f"postgresql-{pg.version}-set-user"] if pg.set_user_installed else []
    # + pylibs: psycopg 3
    return [f"postgresql-{pg.version}", *audit, *set_user, "nftables", "sudo"]


def listen_addresses(pg: PostgresSettings, service_address: str) -> list[str]:
    return list(pg.listen_addresses) or [service_address, "localhost"]


def hba_roles(app: AppSettings) -> list[str]:
    return list(dict.fromkeys([app.user, *APP_ROLES]))


@deploy("Install and configure PostgreSQL")
def install_postgres(pg: PostgresSettings, app: AppSettings, replica_addresses: list[str]) -> None:
    install_packages(pg)
    # Not started here: its first start (run_server) already reads the files written below, so
    # a new cluster is not restarted for its postmaster settings right after.
    server.shell(
        name=f"Create cluster {pg.version}/{pg.cluster} with data checksums",
        commands=[createcluster_command(pg)],
        _if=lambda: not host.get_fact(ClusterExists, version=pg.version, cluster=pg.cluster),
    )
    changed = write_server_files(pg, app, replica_addresses)
    if not pg.pgaudit:
        # Its event triggers would load the library on every DDL and fail once it is no longer
        # preloaded: drop it while the running server still has pgaudit loaded.
        pgsql.drop_extension(name="Drop extension pgaudit (postgres_pgaudit = False)",
                             ext="pgaudit", database_name=app.database, port=pg.port)
    run_server(pg, changed, replica_addresses)
    # A promoted replica's pg_control names the old timeline until its first checkpoint on the
    # new one, which PostgreSQL spreads over checkpoint_timeout; until then pgBackRest refuses
    # to back it up ("WAL timeline 2 does not match pg_control timeline 1").
    server.shell(name="Checkpoint a freshly promoted server (pg_control on the old timeline)",
                 commands=[pgsql.psql("CHECKPOINT", port=pg.port)],
                 _if=lambda: timeline_behind(pgsql.rows(TIMELINE_QUERY, port=pg.port)))


# The pieces below are shared with the replicas (deploy/replica.py), which create the cluster
# from a copy of the primary instead.

def install_packages(pg: PostgresSettings) -> None:
    uploads.put(
        name="Let the deploy create the cluster (checksums, locale), not the package",
        src=StringIO("create_main_cluster = false\n"),
        dest="/etc/postgresql-common/createcluster.d/bgdb.conf",
        create_remote_dir=True,
    )
    aptbatch.install(name="Install PostgreSQL and tools", packages=packages(pg), update=True,
                     cache_time=86400, no_recommends=True)
    pylibs.install_psycopg(host.get_fact(hostfacts.Facts))
    harden_os_user()


SOCKET_GROUP = "bgdb-pgsocket"  # unix_socket_group (deploy/settings.py BASE_CONFIG)
PROFILE = "/var/lib/postgresql/.profile"


def harden_os_user() -> None:
    """CIS 2.1: the postgres user's login shells create files 0600; CIS 2.6: the socket's group,
    which postgres must belong to before the server chowns its socket to it."""
    uploads.put(name="Set the postgres user's umask to 0077 (CIS 2.1)",
                src=StringIO("# Managed by background-agents-db (CIS PostgreSQL 2.1)\n"
                             "umask 0077\n"),
                dest=PROFILE, user="postgres", group="postgres", mode="0644")
    server.group(name=f"Create the socket group {SOCKET_GROUP}", group=SOCKET_GROUP,
                 system=True)
    server.shell(name=f"Add postgres to {SOCKET_GROUP}",
                 commands=[f"usermod -a -G {SOCKET_GROUP} postgres"],
                 _if=lambda: SOCKET_GROUP not in host.get_fact(UserGroups, user="postgres"))


TIMELINE_QUERY = (
    "SELECT pg_is_in_recovery(), (SELECT timeline_id FROM pg_control_checkpoint()), "
    "CASE WHEN pg_is_in_recovery() THEN NULL "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END")


def timeline_behind(found: list[list[str]] | None) -> bool:
    """From TIMELINE_QUERY: a primary writing a later timeline than its last checkpoint's."""
    if not found or len(found[0]) != 3:
        return False  # server down: run_server's failure says so
    in_recovery, checkpoint_tli, current_tli = found[0]
    return in_recovery == "f" and current_tli != "" and int(current_tli) > int(checkpoint_tli)


def createcluster_command(pg: PostgresSettings) -> str:
    return (f"pg_createcluster {pg.version} {pg.cluster} --port {pg.port} --locale {pg.locale} "
            "--encoding UTF8 -- --data-checksums")


def write_server_files(pg: PostgresSettings, app: AppSettings, replication_peers: list[str],
                       adjust: Callable[[dict[str, str]], dict[str, str]] | None = None
                       ) -> list[Any]:
    """Certificates, the tuned drop-in and pg_hba.conf; returns the operations whose change
    needs a reload. `adjust` lets a replica raise settings to its primary's values."""
    address = str(host.data.get("service_address"))
    facts = host.get_fact(hostfacts.Facts)
    conf = hostfacts.tuned_config(pg, facts)
    conf.update(backup.archive_config(backup_settings(Data(host.data.dict())), conf))
    if adjust:
        conf = adjust(conf)
    cert = server_certificate(pg, address)
    ssl_ops = [
        uploads.put(name="Upload the server certificate", src=StringIO(cert.cert_pem),
                    dest=f"{pg.conf_dir}/bgdb-server.crt", user="postgres", group="postgres",
                    mode="0644"),
        uploads.put(name="Upload the server key", src=StringIO(cert.key_pem),
                    dest=f"{pg.conf_dir}/bgdb-server.key", user="postgres", group="postgres",
                    mode="0600"),
        uploads.put(name="Upload the CA certificate for PostgreSQL", src=StringIO(cert.ca_pem),
                    dest=f"{pg.conf_dir}/bgdb-ca.crt", user="postgres", group="postgres",
                    mode="0644"),
    ]
    uploads.put(name="Publish the CA certificate for clients", src=StringIO(cert.ca_pem),
                dest=CA_PATH, mode="0644", create_remote_dir=True)
    tuned_for = (f"{facts.memory_kb} kB RAM reported, "
                 f"{pg.memory_mb * 1024 if pg.memory_mb else facts.memory_kb} kB used, "
                 f"{facts.cpus} CPUs, {pg.disk}, {pg.workload}")
    conf_op = uploads.put(
        name="Write the tuned configuration drop-in",
        src=as_file("bgdb.conf.j2", pg=pg, conf=conf, tuned_for=tuned_for,
                    listen_addresses=listen_addresses(pg, address)),
        dest=f"{pg.conf_dir}/conf.d/bgdb.conf", user="postgres", group="postgres", mode="0644",
    )
    hba_op = uploads.put(
        name="Write pg_hba.conf",
        src=as_file("pg_hba.conf.j2", pg=pg, app=app, app_roles=hba_roles(app),
                    replica_addresses=replication_peers),
        dest=f"{pg.conf_dir}/pg_hba.conf", user="postgres", group="postgres", mode="0640",
    )
    return [conf_op, hba_op, *ssl_ops]


def server_certificate(pg: PostgresSettings, address: str) -> certs.ServerCert:
    """This host's certificate: the operator's files, or one from the bundle's CA (PgBouncer
    serves the same files)."""
    if pg.ssl_files:
        return certs.ServerCert(pg.ssl_files.cert.read_text(), pg.ssl_files.key.read_text(),
                                pg.ssl_files.ca.read_text())
    hostname = host.get_fact(Hostname) or host.name
    # HA mode: every member may serve the floating addresses (deploy/ha.py).
    floating = ha_settings(Data(host.data.dict())).floating if pg.ha else []
    return certs.server_cert(host.name, [hostname, host.name, "localhost"],
                             [address, "127.0.0.1", *floating])


def run_server(pg: PostgresSettings, changed: list[Any], replication_peers: list[str]) -> None:
    """Start PostgreSQL, apply changed files (reload, or restart when needed), kernel settings
    and the firewall, which also lets the replication peers in."""
    restart = uploads.put(name="Install the cluster unit's drop-in (restart after a crash)",
                          src=as_file("postgresql-restart.conf.j2", unit=pg.unit),
                          dest=f"/etc/systemd/system/{pg.unit}.service.d/bgdb-restart.conf",
                          mode="0644", create_remote_dir=True)
    # Restart= applies from the next daemon-reload on: no restart of PostgreSQL for it. By
    # state: a deploy that stopped after writing the file left it unloaded.
    server.shell(name="Load the cluster unit's drop-in", commands=["systemctl daemon-reload"],
                 _if=lambda: restart.did_change() or host.get_fact(
                     hostfacts.UnitProperty, unit=pg.unit, prop="Restart") != "on-failure")
    systemd.service(name="Keep PostgreSQL running and enabled", service=pg.unit, running=True,
                    enabled=True)
    pgsql.apply_config(name="Reload PostgreSQL; restart only if a setting needs it",
                       unit=pg.unit, port=pg.port,
                       _if=lambda: any(op.did_change() for op in changed))
    _kernel_settings()
    if pg.firewall:
        _firewall(pg, replication_peers)


def _kernel_settings() -> None:
    sysctl = uploads.put(name="Write kernel settings for PostgreSQL",
                         src=as_file("60-bgdb-postgresql.conf.j2"),
                         dest="/etc/sysctl.d/60-bgdb-postgresql.conf", mode="0644")
    # vm.* is global to the machine: inside a container the file is written but not loaded.
    server.shell(name="Load kernel settings",
                 commands=["sysctl -q -p /etc/sysctl.d/60-bgdb-postgresql.conf"],
                 _if=lambda: sysctl.did_change() and not host.get_fact(_InContainer))


def _firewall(pg: PostgresSettings, replication_peers: list[str],
              ha_ports: list[int] | None = None) -> None:
    """ha_ports (Patroni's REST API, etcd): from the other members, admin and monitoring
    addresses only."""
    def v4(nets: Any) -> list[str]:
        return list(dict.fromkeys(str(n) for n in nets if n.version == 4))

    rules = uploads.put(
        name="Write the firewall rules",
        src=as_file("firewall.nft.j2", pg=pg,
                    client_cidrs=v4((*pg.allowed_cidrs, *pg.admin_cidrs,
                                     *(ipaddress.ip_network(p) for p in replication_peers))),
                    monitoring_cidrs=v4((*pg.monitoring_cidrs, *(
                        ipaddress.ip_network(a) for a in monitoring_addresses(
                            inventory)))),
                    db_ports=[pg.port, pgbouncer_port(Data(host.data.dict())),
                              *pg.extra_ports], monitoring_ports=_monitoring_ports(pg),
                    ha_ports=ha_ports or [],
                    ha_cidrs=v4((*pg.admin_cidrs, *pg.monitoring_cidrs,
                                 *(ipaddress.ip_network(p) for p in replication_peers),
                                 *(ipaddress.ip_network(a)
                                   for a in monitoring_addresses(inventory))))),
        dest="/etc/bgdb/firewall.nft", mode="0600", create_remote_dir=True,
    )
    unit = uploads.put(name="Install the firewall unit", src=as_file("bgdb-firewall.service.j2"),
                       dest="/etc/systemd/system/bgdb-firewall.service", mode="0644")
    systemd.service(name="Enable the firewall", service="bgdb-firewall", running=True,
                    enabled=True, daemon_reload=unit.will_change)
    systemd.service(name="Apply changed firewall rules", service="bgdb-firewall", reloaded=True,
                    _if=lambda: rules.did_change() or unit.did_change())



def _monitoring_ports(pg: PostgresSettings) -> list[int]:
    """The exporter's and the node exporter's ports, open to postgres_monitoring_cidrs and the
    monitoring hosts only (deploy/exporter.py, deploy/monitoring.py)."""
    data = Data(host.data.dict())
    ex = exporter_settings(data, pg)
    node = [NODE_EXPORTER_PORT] if monitoring_settings(data).node_exporter else []
    return ([ex.port] if ex.enabled else []) + node


class ClusterExists(FactBase[bool]):
    def command(self, version: int, cluster: str) -> str:
        return f"test -f /var/lib/postgresql/{version}/{cluster}/PG_VERSION && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return output == ["yes"]


class UserGroups(FactBase[list[str]]):
    """The groups an OS user belongs to."""

    def command(self, user: str) -> str:
        return f"id -nG {user} 2>/dev/null || true"

    def process(self, output: list[str]) -> list[str]:
        return " ".join(output).split()


class _InContainer(FactBase[bool]):
    def command(self) -> str:
        return "systemd-detect-virt --container >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return output == ["yes"]
