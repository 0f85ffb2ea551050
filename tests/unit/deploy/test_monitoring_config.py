"""The monitoring host's rendered files from plain data (deploy/monitoring_config.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pyinfra.api.exceptions import DeployError

from deploy.monitoring import MONITORING_FIREWALL, NODE_FIREWALL, smtp_password_for
from deploy.monitoring_config import (
    SMTP_PASSWORD_ENV,
    SMTP_PASSWORD_FILE,
    ExporterTarget,
    MonitoringSettings,
    alertmanager_config,
    monitoring_settings,
    node_exporter_args,
    pgbadger_settings,
    prometheus_args,
    prometheus_config,
)
from deploy.pgbadger import PREFIX
from deploy.render import as_file
from deploy.settings import Data, SettingsError


def settings(**kv: object) -> MonitoringSettings:
    return monitoring_settings(Data(kv, env={}))


def test_defaults_and_scrape_config_from_targets() -> None:
    ms = settings()
    assert (ms.scrape_interval, ms.evaluation_interval, ms.retention_days) == (15, 15, 15)
    cfg = yaml.safe_load(prometheus_config(
        ms, address="10.0.0.5", exporters=[ExporterTarget("db1", "10.0.0.1:9847", False, None)],
        nodes=[("db1", "10.0.0.1"), ("bk", "10.0.0.3")]))
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["bgdb"]["static_configs"] == [{"targets": ["10.0.0.1:9847"],
                                               "labels": {"host": "db1"}}]
    assert "scheme" not in jobs["bgdb"] and "basic_auth" not in jobs["bgdb"]
    assert [c["targets"][0] for c in jobs["node"]["static_configs"]] == [
        "10.0.0.1:9100", "10.0.0.3:9100"]
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "10.0.0.5:9093"]
    assert cfg["global"]["scrape_interval"] == "15s"


def test_etcd_job_only_in_ha_mode() -> None:
    """HA mode: each member's etcd metrics listener is a target of job `etcd` (the etcd rules'
    job); without members there is no such job."""
    exporters = [ExporterTarget("db1", "10.0.0.1:9847", False, None)]
    cfg = yaml.safe_load(prometheus_config(settings(), address="10.0.0.5", nodes=[],
                                           exporters=exporters,
                                           etcd=[("db1", "10.0.0.1:2381"),
                                                 ("db2", "10.0.0.2:2381")]))
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["etcd"]["static_configs"] == [
        {"targets": ["10.0.0.1:2381"], "labels": {"host": "db1"}},
        {"targets": ["10.0.0.2:2381"], "labels": {"host": "db2"}}]
    cfg = yaml.safe_load(prometheus_config(settings(), address="10.0.0.5", nodes=[],
                                           exporters=exporters))
    assert "etcd" not in [j["job_name"] for j in cfg["scrape_configs"]]


def test_tls_and_basic_auth_follow_the_exporter() -> None:
    cfg = yaml.safe_load(prometheus_config(
        settings(), address="10.0.0.5", nodes=[],
        exporters=[ExporterTarget("db1", "10.0.0.1:9847", True, "prom")]))
    job = cfg["scrape_configs"][0]
    assert job["scheme"] == "https" and job["tls_config"]["ca_file"].endswith("ca.crt")
    assert job["basic_auth"]["username"] == "prom"
    assert "password" not in job["basic_auth"]  # a file on the host, never the text
    assert "node" not in [j["job_name"] for j in cfg["scrape_configs"]]


def test_exporters_that_differ_are_refused() -> None:
    with pytest.raises(SettingsError, match="exporter_tls .* the same on every database host"):
        prometheus_config(settings(), address="a", nodes=[], exporters=[
            ExporterTarget("db1", "a:1", True, None), ExporterTarget("db2", "b:1", False, None)])


def test_alertmanager_routes() -> None:
    plain = yaml.safe_load(alertmanager_config(settings()))
    assert plain["receivers"] == [{"name": "bgdb"}] and plain["route"]["receiver"] == "bgdb"
    cfg = yaml.safe_load(alertmanager_config(settings(
        monitoring_alert_webhook_urls=["http://10.0.0.9:8080/hook"],
        monitoring_alert_email_to=["ops@example.org"], monitoring_smtp_smarthost="mx:25",
        monitoring_smtp_from="am@example.org", monitoring_alert_group_wait_seconds=2)))
    assert cfg["receivers"][0]["webhook_configs"][0]["url"] == "http://10.0.0.9:8080/hook"
    assert cfg["receivers"][0]["email_configs"][0]["to"] == "ops@example.org"
    assert cfg["global"]["smtp_smarthost"] == "mx:25" and cfg["route"]["group_wait"] == "2s"
    assert cfg["global"]["smtp_require_tls"] is True
    assert "auth_username" not in cfg["receivers"][0]["email_configs"][0]


def test_smtp_login_password_from_a_file_or_inline_for_old_alertmanager() -> None:
    ms = settings(monitoring_alert_email_to=["ops@example.org"], monitoring_smtp_smarthost="mx:25",
                  monitoring_smtp_from="am@example.org", monitoring_smtp_auth_username="am",
                  monitoring_smtp_require_tls=False)
    email = yaml.safe_load(alertmanager_config(ms))["receivers"][0]["email_configs"][0]
    assert email["auth_username"] == "am" and email["auth_password_file"] == SMTP_PASSWORD_FILE
    assert "auth_password" not in email
    old = yaml.safe_load(alertmanager_config(ms, "s3cret"))
    email = old["receivers"][0]["email_configs"][0]
    assert email["auth_password"] == "s3cret" and "auth_password_file" not in email
    assert old["global"]["smtp_require_tls"] is False


@pytest.mark.parametrize(("data", "message"), [
    ({"monitoring_alert_webhook_urls": ["ftp://x"]}, "monitoring_alert_webhook_urls = 'ftp://x'"),
    ({"monitoring_alert_email_to": ["a@b"]}, "needs monitoring_smtp_smarthost"),
    ({"monitoring_scrape_interval_seconds": 0}, "expected an integer 1-3600"),
    ({"monitoring_allowed_cidrs": ["10.0.0.1/8"]}, "not a valid CIDR"),
])
def test_bad_input_is_one_line_naming_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")) as exc:
        settings(**data)
    assert "\n" not in str(exc.value)


def test_arguments_retention_and_listen_address() -> None:
    args = prometheus_args(settings(monitoring_retention_days=30,
                                    monitoring_retention_size_mb=2048), "10.0.0.5")
    assert "--web.listen-address=10.0.0.5:9090" in args
    assert "--storage.tsdb.retention.time=30d" in args
    assert "--storage.tsdb.retention.size=2048MB" in args
    assert "overlay" not in node_exporter_args("10.0.0.1")


def test_node_exporter_filesystem_flag_follows_the_release() -> None:
    # Debian 11's node_exporter 1.1.2 knows only the pre-1.3 flag name.
    assert "--collector.filesystem.ignored-fs-types=" in node_exporter_args("10.0.0.1", "11")
    for release in ("12", "13", ""):
        assert "--collector.filesystem.fs-types-exclude=" in node_exporter_args("10.0.0.1",
                                                                                release)


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed")
def test_rendered_config_passes_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    text = prometheus_config(settings(), address="10.0.0.5", nodes=[("db1", "10.0.0.1")],
                             exporters=[ExporterTarget("db1", "10.0.0.1:9847", False, None)])
    path = tmp_path / "prometheus.yml"
    path.write_text(text.replace("/etc/prometheus/bgdb/rules", str(rules)))
    out = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_pgbadger_job_parses_the_servers_prefix_and_keeps_the_days() -> None:
    from deploy.render import render
    from deploy.settings import BASE_CONFIG

    script = render("bgdb-pgbadger.sh.j2", out_dir="/var/lib/bgdb/pgbadger", prefix=PREFIX,
                    log_dir="/var/lib/postgresql/15/main/log", retention_days=9)
    assert f"--prefix '{BASE_CONFIG['log_line_prefix']}'" in script
    assert "--incremental" in script and "-mtime +9" in script
    # pgBadger needs the time, the pid, user, database, application and client in the prefix.
    for escape in ("%m", "%p", "%u", "%d", "%a", "%h"):
        assert escape in PREFIX
    pb = pgbadger_settings(Data({"pgbadger_retention_days": 9}, env={}))
    assert (pb.enabled, pb.retention_days) == (True, 9)


def test_firewall_tables_and_units() -> None:
    """Prometheus's table keeps its files (hosts deployed before stay unchanged); a backup host's
    node exporter gets a table of its own, which only the allowed networks pass."""
    assert MONITORING_FIREWALL.rules == "/etc/bgdb/monitoring-firewall.nft"
    assert NODE_FIREWALL.rules == "/etc/bgdb/node-firewall.nft"
    fw = NODE_FIREWALL
    rules = as_file("monitoring-firewall.nft.j2", table=fw.table, what=fw.what, source=fw.source,
                    allowed_cidrs=["10.0.0.5/32"], ports=[9100]).read()
    assert "table inet bgdb_node {" in rules
    assert "elements = { 10.0.0.5/32 }" in rules
    assert "tcp dport { 9100 } ip saddr @allowed accept" in rules
    assert "tcp dport { 9100 } counter reject with tcp reset" in rules
    unit = as_file("bgdb-monitoring-firewall.service.j2", table=fw.table,
                   description=fw.description, before=fw.before, rules=fw.rules).read()
    assert "ExecStart=/usr/sbin/nft -f /etc/bgdb/node-firewall.nft" in unit
    assert "Before=network-pre.target prometheus-node-exporter.service" in unit


def testsmtp_password_for_is_the_operators_never_generated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDB_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv(SMTP_PASSWORD_ENV, raising=False)
    ms = settings(monitoring_alert_email_to=["ops@example.org"], monitoring_smtp_smarthost="mx:25",
                  monitoring_smtp_from="am@example.org", monitoring_smtp_auth_username="am")
    with pytest.raises(DeployError, match=r"monitoring_smtp_auth_username = 'am': no password "
                       rf"for alertmanager_smtp: set \${SMTP_PASSWORD_ENV} or ") as exc:
        smtp_password_for(ms)
    assert "\n" not in str(exc.value) and not list(tmp_path.rglob("alertmanager_smtp"))
    monkeypatch.setenv(SMTP_PASSWORD_ENV, "from-env")
    assert smtp_password_for(ms) == "from-env"
    assert smtp_password_for(settings()) is None  # no mail, no login: no password needed
