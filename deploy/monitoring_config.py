"""What the `monitoring` group runs, as plain data: settings, scrape targets from the inventory,
and the rendered prometheus.yml / alertmanager.yml (pure functions: unit tests feed them data).

Prometheus scrapes every database host's bgdb exporter (job `bgdb`, the rules' job name; it also
carries PgBouncer's pools where PgBouncer runs), the node exporter of every database and backup
host (job `node`), itself and Alertmanager. The exporter's scheme and basic auth follow its own
settings (`exporter_tls`, `exporter_basic_auth_user`), so Prometheus scrapes it the way it serves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from deploy.settings import Data, SettingsError

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
NODE_EXPORTER_PORT = 9100
CONF_DIR = "/etc/prometheus/bgdb"  # rules, CA and the scrape password, beside Debian's files
RULES_DIR = f"{CONF_DIR}/rules"
CA_FILE = f"{CONF_DIR}/ca.crt"
SCRAPE_PASSWORD_FILE = f"{CONF_DIR}/exporter-scrape.pass"
SMTP_PASSWORD_FILE = f"{CONF_DIR}/smtp.pass"
SMTP_SECRET, SMTP_PASSWORD_ENV = "alertmanager_smtp", "BGDB_SMTP_PASSWORD"
_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[^\s]*)?$")


@dataclass(frozen=True)
class MonitoringSettings:
    allowed_cidrs: tuple[Any, ...]
    scrape_interval: int
    evaluation_interval: int
    retention_days: int
    retention_size_mb: int
    node_exporter: bool
    webhook_urls: tuple[str, ...]
    email_to: tuple[str, ...]
    smtp_smarthost: str | None
    smtp_from: str | None
    smtp_auth_username: str | None
    smtp_require_tls: bool
    group_wait: int


def monitoring_settings(data: Data) -> MonitoringSettings:
    urls = data.get("monitoring_alert_webhook_urls")
    for url in urls:
        if not _URL.match(url):
            raise SettingsError("monitoring_alert_webhook_urls", url, "expected an http(s) URL")
    email_to = data.get("monitoring_alert_email_to")
    smarthost, sender = data.get("monitoring_smtp_smarthost"), data.get("monitoring_smtp_from")
    if email_to and not (smarthost and sender):
        raise SettingsError("monitoring_alert_email_to", list(email_to), "needs "
                            "monitoring_smtp_smarthost and monitoring_smtp_from")
    return MonitoringSettings(
        allowed_cidrs=data.get("monitoring_allowed_cidrs"),
        scrape_interval=data.get("monitoring_scrape_interval_seconds"),
        evaluation_interval=data.get("monitoring_evaluation_interval_seconds"),
        retention_days=data.get("monitoring_retention_days"),
        retention_size_mb=data.get("monitoring_retention_size_mb"),
        node_exporter=data.get("monitoring_node_exporter"),
        webhook_urls=urls, email_to=email_to, smtp_smarthost=smarthost, smtp_from=sender,
        smtp_auth_username=data.get("monitoring_smtp_auth_username"),
        smtp_require_tls=data.get("monitoring_smtp_require_tls"),
        group_wait=data.get("monitoring_alert_group_wait_seconds"),
    )


def monitoring_addresses(inventory: Any) -> list[str]:
    """The monitoring hosts (pyinfra's inventory), which the database hosts' firewalls let
    scrape the exporter and the node exporter."""
    return [str(h.data.get("service_address")) for h in inventory.get_group("monitoring", [])]


@dataclass(frozen=True)
class PgBadgerSettings:
    enabled: bool
    schedule: str
    retention_days: int


def pgbadger_settings(data: Data) -> PgBadgerSettings:
    return PgBadgerSettings(data.get("pgbadger_enabled"), data.get("pgbadger_schedule"),
                            data.get("pgbadger_retention_days"))


@dataclass(frozen=True)
class ExporterTarget:
    """One database host's bgdb exporter as Prometheus must scrape it."""
    host: str
    address: str  # host:port
    tls: bool
    basic_auth_user: str | None
    # HA mode with synchronous_mode: a leader must have a synchronous standby (the label the
    # rule BgdbSyncStandbyMissing selects on; the server alone cannot tell it is required).
    sync_required: bool = False


def exporter_job(targets: list[ExporterTarget], *, with_password: bool) -> dict[str, Any]:
    """Job `bgdb`. A job has one scheme and one set of credentials: hosts that differ are refused
    (set exporter_tls / exporter_basic_auth_user alike on every database host)."""
    kinds = {(t.tls, t.basic_auth_user) for t in targets}
    if len(kinds) > 1:
        raise SettingsError("exporter_tls", sorted(f"{t.host}: tls={t.tls}, basic_auth_user="
                                                   f"{t.basic_auth_user}" for t in targets),
                            "the monitoring host scrapes every exporter alike: set exporter_tls "
                            "and exporter_basic_auth_user the same on every database host")
    job: dict[str, Any] = {"job_name": "bgdb", "static_configs": [
        {"targets": [t.address],
         "labels": {"host": t.host, **({"sync_required": "true"} if t.sync_required else {})}}
        for t in targets]}
    if targets and targets[0].tls:
        job["scheme"] = "https"
        job["tls_config"] = {"ca_file": CA_FILE}
    if targets and targets[0].basic_auth_user and with_password:
        job["basic_auth"] = {"username": targets[0].basic_auth_user,
                             "password_file": SCRAPE_PASSWORD_FILE}
    return job


def prometheus_config(ms: MonitoringSettings, *, address: str, exporters: list[ExporterTarget],
                      nodes: list[tuple[str, str]],
                      etcd: list[tuple[str, str]] | None = None) -> str:
    """prometheus.yml; `nodes` are (host, address) of node exporters, `etcd` the HA members'
    etcd metrics listeners (host, address:port)."""
    interval = f"{ms.scrape_interval}s"
    timeout = f"{min(ms.scrape_interval, 10)}s"
    jobs: list[dict[str, Any]] = [
        exporter_job(exporters, with_password=True),
        {"job_name": "node", "static_configs": [
            {"targets": [f"{a}:{NODE_EXPORTER_PORT}"], "labels": {"host": h}} for h, a in nodes]},
        {"job_name": "etcd", "static_configs": [
            {"targets": [target], "labels": {"host": h}} for h, target in etcd or []]},
        {"job_name": "prometheus", "static_configs": [
            {"targets": [f"{address}:{PROMETHEUS_PORT}"]}]},
        {"job_name": "alertmanager", "static_configs": [
            {"targets": [f"{address}:{ALERTMANAGER_PORT}"]}]},
    ]
    cfg = {
        "global": {"scrape_interval": interval, "scrape_timeout": timeout,
                   "evaluation_interval": f"{ms.evaluation_interval}s"},
        "rule_files": [f"{RULES_DIR}/*.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"{address}:{ALERTMANAGER_PORT}"]}]}]},
        "scrape_configs": [j for j in jobs if j["static_configs"]],
    }
    return "# Managed by background-agents-db (deploy/monitoring.py).\n" + yaml.safe_dump(
        cfg, sort_keys=False)


def alertmanager_config(ms: MonitoringSettings, smtp_password: str | None = None) -> str:
    """alertmanager.yml: one route to one receiver holding every configured channel. The SMTP
    password is read from SMTP_PASSWORD_FILE (Alertmanager >= 0.25); only an older one
    (Debian 11's 0.21) gets it as `smtp_password`, inside this file (mode 0640 there too)."""
    receiver: dict[str, Any] = {"name": "bgdb"}
    if ms.webhook_urls:
        receiver["webhook_configs"] = [{"url": u, "send_resolved": True}
                                       for u in ms.webhook_urls]
    if ms.email_to:
        auth: dict[str, str] = {}
        if ms.smtp_auth_username:
            auth = {"auth_username": ms.smtp_auth_username}
            if smtp_password is None:
                auth["auth_password_file"] = SMTP_PASSWORD_FILE
            else:
                auth["auth_password"] = smtp_password
        receiver["email_configs"] = [{"to": to, "send_resolved": True, **auth}
                                     for to in ms.email_to]
    cfg: dict[str, Any] = {}
    if ms.email_to:
        cfg["global"] = {"smtp_smarthost": ms.smtp_smarthost, "smtp_from": ms.smtp_from,
                         "smtp_require_tls": ms.smtp_require_tls}
    cfg["route"] = {"receiver": "bgdb", "group_by": ["alertname", "instance"],
                    "group_wait": f"{ms.group_wait}s", "group_interval": "1m",
                    "repeat_interval": "4h"}
    cfg["receivers"] = [receiver]
    return "# Managed by background-agents-db (deploy/monitoring.py).\n" + yaml.safe_dump(
        cfg, sort_keys=False)


def prometheus_args(ms: MonitoringSettings, address: str) -> str:
    args = [f"--web.listen-address={address}:{PROMETHEUS_PORT}",
            f"--storage.tsdb.retention.time={ms.retention_days}d"]
    if ms.retention_size_mb:
        args.append(f"--storage.tsdb.retention.size={ms.retention_size_mb}MB")
    return " ".join(args)


def alertmanager_args(address: str) -> str:
    # No cluster (a single Alertmanager): otherwise it listens for gossip on every interface.
    return (f"--web.listen-address={address}:{ALERTMANAGER_PORT} --cluster.listen-address= "
            f"--web.external-url=http://{address}:{ALERTMANAGER_PORT}/")


# node_exporter 1.5's default exclusion list without overlay: a database host may be a container
# (LXC, systemd-nspawn) whose root filesystem, and so PostgreSQL's data, is an overlay.
FS_TYPES_EXCLUDE = ("^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|"
                    "hugetlbfs|iso9660|mqueue|nsfs|proc|procfs|pstore|rpc_pipefs|securityfs|"
                    "selinuxfs|squashfs|sysfs|tracefs)$")


def node_exporter_args(address: str, debian_version: str = "") -> str:
    # node_exporter 1.3 renamed the flag; Debian 11 ships 1.1.2, which refuses the new name
    # (the unit then fails at start).
    exclude = ("ignored-fs-types" if debian_version == "11" else "fs-types-exclude")
    return (f"--web.listen-address={address}:{NODE_EXPORTER_PORT} "
            f"--collector.filesystem.{exclude}={FS_TYPES_EXCLUDE}")


def defaults_file(args: str) -> str:
    """/etc/default/<unit>: Debian's units read ARGS from it."""
    return f"# Managed by background-agents-db (deploy/monitoring.py).\nARGS=\"{args}\"\n"
