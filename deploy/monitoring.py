"""Prometheus and Alertmanager (the distribution's packages) on the `monitoring` hosts, and the
node exporter on every database and backup host.

The scrape configuration comes from the inventory (deploy/monitoring_config.py); the alert and
recording rules are the repository's alerts/*.rules.yml. A changed prometheus.yml or rule file is
checked with promtool on the host before Prometheus reloads it (a bad file never replaces a
running configuration), alertmanager.yml with amtool; changed command-line arguments (listen
address, retention) restart the service. Nothing changes on a second run.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.api.inventory import Inventory
from pyinfra.operations import apt, files, server, systemd

from deploy import aptbatch, certs, exporter, hostfacts, secrets, uploads
from deploy.ha_config import ETCD_METRICS_PORT
from deploy.monitoring_config import (
    ALERTMANAGER_PORT,
    CA_FILE,
    NODE_EXPORTER_PORT,
    PROMETHEUS_PORT,
    RULES_DIR,
    SCRAPE_PASSWORD_FILE,
    SMTP_PASSWORD_ENV,
    SMTP_PASSWORD_FILE,
    SMTP_SECRET,
    ExporterTarget,
    MonitoringSettings,
    alertmanager_args,
    alertmanager_config,
    defaults_file,
    monitoring_addresses,
    node_exporter_args,
    prometheus_args,
    prometheus_config,
)
from deploy.render import as_file
from deploy.settings import Data, exporter_settings, ha_settings, postgres_settings

REPO = Path(__file__).resolve().parent.parent
RULE_FILES = sorted((REPO / "alerts").glob("*.rules.yml"))
DB_GROUPS = ("postgres_primary", "postgres_replicas")
PACKAGES = ["prometheus", "prometheus-alertmanager", "nftables"]


@dataclass(frozen=True)
class Firewall:
    """An nftables table of our own that opens `ports` only to some CIDRs, and its unit."""
    table: str
    unit: str
    description: str
    what: str  # whose ports, and from where (the rules file's comment)
    source: str
    before: tuple[str, ...]  # units it must be up before

    @property
    def rules(self) -> str:
        return f"/etc/bgdb/{self.unit.removeprefix('bgdb-')}.nft"


MONITORING_FIREWALL = Firewall("bgdb_monitoring", "bgdb-monitoring-firewall",
                               "monitoring firewall", "Prometheus and Alertmanager",
                               "monitoring_allowed_cidrs",
                               ("prometheus.service", "prometheus-alertmanager.service"))
# A backup host has no database firewall (table inet bgdb) to hold the node exporter's port.
NODE_FIREWALL = Firewall("bgdb_node", "bgdb-node-firewall", "node exporter firewall",
                         "The node exporter", "postgres_monitoring_cidrs and the monitoring hosts",
                         ("prometheus-node-exporter.service",))


def _address(h: object) -> str:
    return str(h.data.get("service_address"))  # type: ignore[attr-defined]


def exporter_targets(inventory: Inventory) -> list[ExporterTarget]:
    """Every database host whose exporter is enabled, with how it serves /metrics."""
    targets = []
    for h in inventory:
        if not set(DB_GROUPS) & set(h.groups):
            continue
        data = Data(h.data.dict())
        ex = exporter_settings(data, postgres_settings(data))
        if ex.enabled:
            ha = ha_settings(data)
            targets.append(ExporterTarget(h.name, f"{exporter.listen_address(ex, _address(h))}:"
                                          f"{ex.port}", ex.tls, ex.basic_auth_user,
                                          sync_required=ha.enabled and ha.synchronous_mode))
    return targets


def node_targets(inventory: Inventory, ms: MonitoringSettings) -> list[tuple[str, str]]:
    if not ms.node_exporter:
        return []
    return [(h.name, _address(h)) for h in inventory
            if {*DB_GROUPS, "backup"} & set(h.groups)]


def etcd_targets(inventory: Inventory) -> list[tuple[str, str]]:
    """HA mode: every database host's etcd metrics listener (deploy/ha_config.py)."""
    hosts = [h for h in inventory if set(DB_GROUPS) & set(h.groups)]
    if not hosts or not ha_settings(Data(hosts[0].data.dict())).enabled:
        return []
    return [(h.name, f"{_address(h)}:{ETCD_METRICS_PORT}") for h in hosts]


@deploy("Install the node exporter")
def install_node_exporter(ms: MonitoringSettings) -> None:
    if not ms.node_exporter:
        return  # an installed one is left alone: another tool may use it
    pg = postgres_settings(Data(host.data.dict()))
    if pg.firewall and not set(DB_GROUPS) & set(host.groups):
        _firewall(NODE_FIREWALL, [NODE_EXPORTER_PORT],
                  [*pg.monitoring_cidrs, *monitoring_addresses(host.inventory)])
    # The defaults file first: the package starts the service with it, never on every interface.
    args = uploads.put(name="Write the node exporter's arguments",
                       src=StringIO(defaults_file(node_exporter_args(
                           _address(host), host.get_fact(hostfacts.Facts).os_version))),
                       dest="/etc/default/prometheus-node-exporter", mode="0644")
    apt.packages(name="Install the node exporter", packages=["prometheus-node-exporter"],
                 cache_time=86400, no_recommends=True)
    server.shell(name="Restart the node exporter (its arguments changed)",
                 commands=["systemctl restart prometheus-node-exporter"],
                 _if=args.did_change)
    systemd.service(name="Keep the node exporter running and enabled",
                    service="prometheus-node-exporter", running=True, enabled=True)


@deploy("Install Prometheus and Alertmanager")
def install_monitoring(ms: MonitoringSettings, inventory: Inventory) -> None:
    address = _address(host)
    _firewall(MONITORING_FIREWALL, [PROMETHEUS_PORT, ALERTMANAGER_PORT],
              [*ms.allowed_cidrs, address])
    # Arguments first, so the packages' first start already listens on the service address only.
    prom_args = uploads.put(name="Write Prometheus's arguments",
                            src=StringIO(defaults_file(prometheus_args(ms, address))),
                            dest="/etc/default/prometheus", mode="0644")
    am_args = uploads.put(name="Write Alertmanager's arguments",
                          src=StringIO(defaults_file(alertmanager_args(address))),
                          dest="/etc/default/prometheus-alertmanager", mode="0644")
    apt.packages(name="Install Prometheus and Alertmanager", packages=PACKAGES,
                 cache_time=86400, no_recommends=True)
    files.directory(name=f"Create {RULES_DIR}", path=RULES_DIR, user="root",
                    group="prometheus", mode="0750")
    changed = [uploads.put(name=f"Upload the rules {f.name}", src=str(f),
                           dest=f"{RULES_DIR}/{f.name}", user="root", group="prometheus",
                           mode="0640") for f in RULE_FILES]
    targets = exporter_targets(inventory)
    if any(t.tls for t in targets):
        changed.append(uploads.put(name="Upload the CA that signs the exporters' certificates",
                                   src=StringIO(_ca_pem()), dest=CA_FILE, mode="0644"))
    if any(t.basic_auth_user for t in targets):
        changed.append(uploads.put(
            name="Write the exporters' scrape password", dest=SCRAPE_PASSWORD_FILE,
            src=StringIO(secrets.password(exporter.SCRAPE_SECRET)), user="root",
            group="prometheus", mode="0640"))
    changed.append(uploads.put(
        name="Write prometheus.yml",
        src=StringIO(prometheus_config(ms, address=address, exporters=targets,
                                       nodes=node_targets(inventory, ms),
                                       etcd=etcd_targets(inventory))),
        dest="/etc/prometheus/prometheus.yml", user="root", group="prometheus", mode="0640"))
    server.shell(name="Check and reload Prometheus's configuration",
                 commands=["promtool check config --syntax-only /etc/prometheus/prometheus.yml "
                           f"&& promtool check rules {RULES_DIR}/*.yml",
                           "systemctl reload prometheus"],
                 _if=lambda: any(op.did_change() for op in changed) and not prom_args.did_change())
    am_changed = []
    password = smtp_password_for(ms)
    inline = password is not None and host.get_fact(hostfacts.Facts).os_version == "11"
    if password is not None and not inline:
        am_changed.append(uploads.put(name="Write the SMTP password", dest=SMTP_PASSWORD_FILE,
                                      src=StringIO(password), user="root", group="prometheus",
                                      mode="0640"))
    am_changed.append(uploads.put(name="Write alertmanager.yml",
                                  src=StringIO(alertmanager_config(ms, password if inline
                                                                   else None)),
                                  dest="/etc/prometheus/alertmanager.yml", user="root",
                                  group="prometheus", mode="0640"))
    server.shell(name="Check and reload Alertmanager's configuration",
                 commands=["amtool check-config /etc/prometheus/alertmanager.yml",
                           "systemctl reload prometheus-alertmanager"],
                 _if=lambda: any(op.did_change() for op in am_changed)
                 and not am_args.did_change())
    server.shell(name="Restart Prometheus (its arguments changed)",
                 commands=["promtool check config /etc/prometheus/prometheus.yml",
                           "systemctl restart prometheus"], _if=prom_args.did_change)
    server.shell(name="Restart Alertmanager (its arguments changed)",
                 commands=["systemctl restart prometheus-alertmanager"], _if=am_args.did_change)
    for unit in ("prometheus", "prometheus-alertmanager"):
        systemd.service(name=f"Keep {unit} running and enabled", service=unit, running=True,
                        enabled=True)


def smtp_password_for(ms: MonitoringSettings) -> str | None:
    """The SMTP login's password (the operator's: never generated), or None without a login."""
    if not (ms.email_to and ms.smtp_auth_username):
        return None
    try:
        return secrets.password(SMTP_SECRET, env=SMTP_PASSWORD_ENV, generate=False)
    except secrets.SecretError as exc:
        raise DeployError(f"monitoring_smtp_auth_username = {ms.smtp_auth_username!r}: "
                          f"{exc}") from None


def _ca_pem() -> str:
    crt, _ = certs.ca_paths()
    certs.ensure_ca()
    return crt.read_text()


def _firewall(fw: Firewall, ports: list[int], allowed: list[Any]) -> None:
    """`ports` open only to `allowed` (IPv4 networks or addresses) and to this host itself."""
    nets = [str(ipaddress.ip_network(n)) for n in [*allowed, _address(host)]
            if ipaddress.ip_network(n).version == 4]
    aptbatch.install(name="Install nftables", packages=["nftables"], cache_time=86400,
                     no_recommends=True)
    rules = uploads.put(name=f"Write the {fw.description} rules",
                        src=as_file("monitoring-firewall.nft.j2", table=fw.table, what=fw.what,
                                    source=fw.source, allowed_cidrs=list(dict.fromkeys(nets)),
                                    ports=ports),
                        dest=fw.rules, mode="0600", create_remote_dir=True)
    unit = uploads.put(name=f"Install the {fw.description} unit",
                       src=as_file("bgdb-monitoring-firewall.service.j2", table=fw.table,
                                   description=fw.description, before=fw.before,
                                   rules=fw.rules),
                       dest=f"/etc/systemd/system/{fw.unit}.service", mode="0644")
    systemd.service(name=f"Enable the {fw.description}", service=fw.unit, running=True,
                    enabled=True, daemon_reload=unit.will_change)
    systemd.service(name=f"Apply changed {fw.description} rules", service=fw.unit,
                    reloaded=True, _if=lambda: rules.did_change() or unit.did_change())
