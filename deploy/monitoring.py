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
import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.inventory import Inventory
from pyinfra.operations import apt, files, server, systemd

from deploy import certs, exporter, hostfacts, secrets, uploads
from deploy.monitoring_config import (
    ALERTMANAGER_PORT,
    CA_FILE,
    PROMETHEUS_PORT,
    RULES_DIR,
    SCRAPE_PASSWORD_FILE,
    ExporterTarget,
    MonitoringSettings,
    alertmanager_args,
    alertmanager_config,
    defaults_file,
    node_exporter_args,
    prometheus_args,
    prometheus_config,
)
from deploy.render import as_file
from deploy.settings import Data, exporter_settings, postgres_settings

REPO = Path(__file__).resolve().parent.parent
RULE_FILES = sorted((REPO / "alerts").glob("*.rules.yml"))
DB_GROUPS = ("postgres_primary", "postgres_replicas")
PACKAGES = ["prometheus", "prometheus-alertmanager", "nftables"]
FIREWALL_RULES = "/etc/bgdb/monitoring-firewall.nft"
FIREWALL_UNIT = "bgdb-monitoring-firewall"


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
            targets.append(ExporterTarget(h.name, f"{exporter.listen_address(ex, _address(h))}:"
                                          f"{ex.port}", ex.tls, ex.basic_auth_user))
    return targets


def node_targets(inventory: Inventory, ms: MonitoringSettings) -> list[tuple[str, str]]:
    if not ms.node_exporter:
        return []
    return [(h.name, _address(h)) for h in inventory
            if {*DB_GROUPS, "backup"} & set(h.groups)]


@deploy("Install the node exporter")
def install_node_exporter(ms: MonitoringSettings) -> None:
    if not ms.node_exporter:
        return  # an installed one is left alone: another tool may use it
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
    _firewall(ms)
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
                                       nodes=node_targets(inventory, ms))),
        dest="/etc/prometheus/prometheus.yml", user="root", group="prometheus", mode="0640"))
    reload = server.shell(name="Check and reload Prometheus's configuration",
                 commands=["promtool check config --syntax-only /etc/prometheus/prometheus.yml "
                           f"&& promtool check rules {RULES_DIR}/*.yml",
                           "systemctl reload prometheus"],
                 _if=lambda: any(op.did_change() for op in changed) and not prom_args.did_change())
    am_conf = uploads.put(name="Write alertmanager.yml", src=StringIO(alertmanager_config(ms)),
                          dest="/etc/prometheus/alertmanager.yml", user="root",
                          group="prometheus", mode="0640")
    server.shell(name="Check and reload Alertmanager's configuration",
                 commands=["amtool check-config /etc/prometheus/alertmanager.yml",
                           "systemctl reload prometheus-alertmanager"],
                 _if=lambda: am_conf.did_change() and not am_args.did_change())
    restart = server.shell(name="Restart Prometheus (its arguments changed)",
                 commands=["promtool check config /etc/prometheus/prometheus.yml",
                           "systemctl restart prometheus"], _if=prom_args.did_change)
    server.shell(name="Restart Alertmanager (its arguments changed)",
                 commands=["systemctl restart prometheus-alertmanager"], _if=am_args.did_change)
    for unit in ("prometheus", "prometheus-alertmanager"):
        systemd.service(name=f"Keep {unit} running and enabled", service=unit, running=True,
                        enabled=True)
    # So that the deploy ends with every target's health known (a check right after it sees
    # up or down, not "unknown"); never fails the deploy.
    server.shell(name="Wait for Prometheus's first scrape of every target",
                 commands=[shlex.join(["python3", "-c", _WAIT_SCRAPED,
                                       f"http://{address}:{PROMETHEUS_PORT}/api/v1/targets",
                                       str(2 * ms.scrape_interval + 15)])],
                 _if=lambda: reload.did_change() or restart.did_change())


_WAIT_SCRAPED = """
import json, sys, time, urllib.request
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5) as resp:
            targets = json.load(resp)["data"]["activeTargets"]
        if targets and all(t["health"] != "unknown" for t in targets):
            break
    except OSError:
        pass
    time.sleep(1)
else:
    print("some targets not scraped yet")
"""


def _ca_pem() -> str:
    crt, _ = certs.ca_paths()
    certs.ensure_ca()
    return crt.read_text()


def _firewall(ms: MonitoringSettings) -> None:
    allowed = [str(n) for n in ms.allowed_cidrs if n.version == 4]
    allowed.append(str(ipaddress.ip_network(f"{_address(host)}/32")))
    apt.packages(name="Install nftables", packages=["nftables"], cache_time=86400,
                 no_recommends=True)
    rules = uploads.put(name="Write the monitoring firewall rules",
                        src=as_file("monitoring-firewall.nft.j2",
                                    allowed_cidrs=list(dict.fromkeys(allowed)),
                                    ports=[PROMETHEUS_PORT, ALERTMANAGER_PORT]),
                        dest=FIREWALL_RULES, mode="0600", create_remote_dir=True)
    unit = uploads.put(name="Install the monitoring firewall unit",
                       src=as_file("bgdb-monitoring-firewall.service.j2"),
                       dest=f"/etc/systemd/system/{FIREWALL_UNIT}.service", mode="0644")
    systemd.service(name="Enable the monitoring firewall", service=FIREWALL_UNIT, running=True,
                    enabled=True, daemon_reload=unit.will_change)
    systemd.service(name="Apply changed monitoring firewall rules", service=FIREWALL_UNIT,
                    reloaded=True, _if=lambda: rules.did_change() or unit.did_change())
