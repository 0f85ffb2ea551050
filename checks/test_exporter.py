"""Monitoring items of the readiness list: the bgdb exporter on every primary (service, endpoint,
metrics, private credentials, firewall) and the alert rules Prometheus loads.

The endpoint is fetched on the host itself (the checks' machine need not be in
postgres_monitoring_cidrs), with the scheme and credentials the deploy configured.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bgdb.remote import Target
from checks import ha, nft
from deploy import exporter, secrets
from deploy.postgres import CA_PATH
from deploy.settings import Data, ExporterSettings, exporter_settings

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "alerts" / "bgdb.rules.yml"
PROMTOOL = "/usr/bin/promtool"
# Metrics every scrape of a healthy primary has: availability, connections, TPS, locks, WAL
# archiving, agent health, error rate, latency histogram and the exporter's own cost.
KEY_METRICS = (
    "bgdb_pg_max_connections", "bgdb_pg_connections", "bgdb_pg_xact_commit_total",
    "bgdb_pg_lock_wait_ratio", "bgdb_pg_archiver_archived_total", "bgdb_pg_cache_hit_ratio",
    "bgdb_agents_expected_heartbeat", "bgdb_agents_missed_heartbeats_max",
    "bgdb_operation_error_ratio", "bgdb_statement_latency_seconds_count",
    "bgdb_exporter_scrape_duration_seconds",
)
# Runs on the host with its python3: prints the HTTP status, then the body.
_FETCH = """
import base64, ssl, sys, urllib.error, urllib.request
url, ca, auth = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url)
if auth:
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
ctx = ssl.create_default_context(cafile=ca) if url.startswith("https") else None
try:
    with urllib.request.urlopen(req, timeout=20, context=ctx) as resp:
        status, body = resp.status, resp.read().decode()
except urllib.error.HTTPError as exc:
    status, body = exc.code, exc.read().decode(errors="replace")
except OSError as exc:
    status, body = 0, str(getattr(exc, "reason", exc))
print(status)
sys.stdout.write(body)
"""


def settings(t: Target) -> ExporterSettings:
    ex = exporter_settings(Data(t.inv.data), t.pg)
    if not ex.enabled:
        pytest.skip("exporter_enabled is False")
    return ex


def url(t: Target, ex: ExporterSettings) -> str:
    scheme = "https" if ex.tls else "http"
    return f"{scheme}://{exporter.listen_address(ex, t.inv.address)}:{ex.port}/metrics"


def scrape(t: Target, ex: ExporterSettings) -> tuple[int, str]:
    """(HTTP status, body) of one scrape made on the host; status 0 = no answer."""
    auth = ""
    if ex.basic_auth_user:
        auth = f"{ex.basic_auth_user}:{secrets.password(exporter.SCRAPE_SECRET, generate=False)}"
    cmd = shlex.join(["python3", "-c", _FETCH, url(t, ex), CA_PATH, auth])
    out = t.host.run(cmd)
    status, _, body = out.stdout.partition("\n")
    if out.rc != 0 or not status.strip().isdigit():
        return 0, (out.stderr or out.stdout).strip()
    return int(status), body


def samples(body: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            found.setdefault(s.name, []).append((dict(s.labels), s.value))
    return found


def test_exporter_running(primary: Target) -> None:
    """The bgdb exporter service is running, enabled and listening"""
    ex = settings(primary)
    svc = primary.host.service(exporter.UNIT)
    assert svc.is_running, f"{exporter.UNIT} is not running:\n{primary.journal(exporter.UNIT)}"
    assert svc.is_enabled, f"{exporter.UNIT} does not start at boot"
    address = exporter.listen_address(ex, primary.inv.address)
    assert primary.host.socket(f"tcp://{address}:{ex.port}").is_listening, \
        f"nothing listens on {address}:{ex.port}:\n{primary.journal(exporter.UNIT)}"


def test_exporter_metrics(primary: Target) -> None:
    """The exporter answers with bgdb_up 1 and the key metrics"""
    ex = settings(primary)
    status, body = scrape(primary, ex)
    assert status == 200, (f"{url(primary, ex)} answered {status or 'nothing'}: {body[:300]}\n"
                           f"{primary.journal(exporter.UNIT)}")
    found = samples(body)
    up = [v for _, v in found.get("bgdb_up", [])]
    assert up == [1.0], (f"bgdb_up is {up or 'missing'}: the exporter cannot query PostgreSQL "
                         f"as bg_agents_monitor\n{primary.journal(exporter.UNIT)}")
    missing = [m for m in KEY_METRICS if m not in found]
    assert not missing, f"metrics missing from the scrape: {missing}"
    interval = found["bgdb_exporter_heartbeat_interval_seconds"][0][1]
    assert interval == ex.heartbeat_interval_seconds, \
        f"the exporter runs with heartbeat interval {interval}, deploy asked for " \
        f"{ex.heartbeat_interval_seconds}: restart {exporter.UNIT}"
    if ex.pgbouncer:
        bouncer = [v for _, v in found.get("bgdb_pgbouncer_up", [])]
        assert bouncer == [1.0], f"bgdb_pgbouncer_up is {bouncer or 'missing'}: the exporter " \
            "cannot query PgBouncer's admin console as bg_agents_monitor"
    if ex.backup_status:
        ok = [v for _, v in found.get("bgdb_backup_status_ok", [])]
        assert ok == [1.0], f"bgdb_backup_status_ok is {ok or 'missing'}: the backup status " \
            "file is missing or unreadable, backup freshness is not monitored"
    if ha.members():  # the leader's exporter reads its Patroni (exporters/patroni.py)
        seen = {name: [v for _, v in found.get(name, [])]
                for name in ("bgdb_patroni_up", "bgdb_patroni_leader")}
        assert seen == {"bgdb_patroni_up": [1.0], "bgdb_patroni_leader": [1.0]}, \
            f"the exporter's view of Patroni: {seen} (expected it to answer and lead): " \
            "patroni_url in the exporter's config, Patroni's REST API"
        absent = [n for n in ("bgdb_patroni_pending_restart",
                              "bgdb_patroni_dcs_last_seen_age_seconds") if n not in found]
        assert not absent, f"Patroni metrics the alerts use are missing: {absent}"


def test_exporter_credentials_private(primary: Target) -> None:
    """The exporter's password file is readable by its own user only"""
    settings(primary)
    f = primary.host.file(exporter.PASSFILE)
    assert f.exists, f"{exporter.PASSFILE} is missing"
    assert (f.user, f.mode) == (exporter.USER, 0o600), \
        f"{exporter.PASSFILE} is {oct(f.mode)} owned by {f.user}; expected 0600 {exporter.USER}"
    conf = primary.host.file(exporter.CONFIG)
    assert conf.exists and conf.mode & 0o007 == 0, \
        f"{exporter.CONFIG} is missing or readable by others ({oct(conf.mode)})"
    user = primary.host.user(exporter.USER)
    assert user.exists and user.shell in ("/usr/sbin/nologin", "/bin/false"), \
        f"system user {exporter.USER} is missing or can log in (shell {user.shell})"


def test_exporter_port_firewalled(primary: Target) -> None:
    """The exporter's port is open to the monitoring networks only"""
    ex = settings(primary)
    if not primary.pg.firewall:
        pytest.skip("postgres_firewall is False")
    wrong = nft.port_limited(primary, "bgdb", ex.port, "monitoring")
    assert wrong is None, wrong


def test_alert_rules_valid() -> None:
    """The alert and recording rules pass promtool check rules"""
    promtool = shutil.which("promtool") or PROMTOOL
    assert Path(promtool).exists(), "promtool is missing on this machine (apt package prometheus)"
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, \
        f"promtool check rules {RULES.name} failed: {(out.stderr or out.stdout).strip()}"
