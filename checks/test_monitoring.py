"""The monitoring layer on each `monitoring` host: Prometheus and Alertmanager running, every
scrape target up, every rule of alerts/ loaded, Alertmanager reachable from Prometheus; and on
every database host the pgBadger report's timer; on a backup host, the node exporter's port
limited to the monitoring networks. The APIs are asked on the host itself (the checks' machine
need not be in monitoring_allowed_cidrs)."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from bgdb import promql
from bgdb.remote import Target
from checks import nft
from deploy.monitoring import DB_GROUPS, NODE_FIREWALL
from deploy.monitoring_config import (
    ALERTMANAGER_PORT,
    NODE_EXPORTER_PORT,
    PROMETHEUS_PORT,
    monitoring_settings,
    pgbadger_settings,
)
from deploy.pgbadger import UNIT as PGBADGER_UNIT
from deploy.settings import Data, postgres_settings

# Runs on the host with its python3: the JSON body, or {"error": ...} when nothing answers.
_GET = """
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as resp:
        sys.stdout.write(resp.read().decode())
except Exception as exc:
    print(json.dumps({"error": str(exc)}))
"""


def api(t: Target, port: int, path: str) -> Any:
    url = f"http://{t.inv.address}:{port}{path}"
    out = t.host.run(shlex.join(["python3", "-c", _GET, url]))
    try:
        body = json.loads(out.stdout)
    except ValueError:
        body = {"error": (out.stderr or out.stdout).strip()[:300]}
    if isinstance(body, dict) and "error" in body:
        raise AssertionError(f"{t.name}: {url} does not answer: {body['error']}")
    return body


@pytest.mark.parametrize("unit", ["prometheus", "prometheus-alertmanager"])
def test_monitoring_service_running(monitor: Target, unit: str) -> None:
    svc = monitor.host.service(unit)
    assert svc.is_running and svc.is_enabled, \
        f"{monitor.name}: {unit} is not running/enabled:\n{monitor.journal(unit, 15)}"


# Until every active target has been scraped once, or the time is up: Prometheus scrapes a new
# target at an offset of up to one interval, so right after a deploy some may not have a health
# yet (the deploy does not wait for them).
_WAIT_SCRAPED = """
import json, sys, time, urllib.request
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5) as resp:
            targets = json.load(resp)["data"]["activeTargets"]
        if targets and all(t["health"] != "unknown" for t in targets):
            break
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(1)
"""


def test_prometheus_targets_up(monitor: Target) -> None:
    path = "/api/v1/targets?state=active"
    interval = monitoring_settings(Data(monitor.inv.data)).scrape_interval
    monitor.host.run(shlex.join(["python3", "-c", _WAIT_SCRAPED,
                                 f"http://{monitor.inv.address}:{PROMETHEUS_PORT}{path}",
                                 str(2 * interval + 15)]))
    targets = api(monitor, PROMETHEUS_PORT, path)["data"]
    active = targets["activeTargets"]
    assert active, f"{monitor.name}: Prometheus has no scrape target"
    # The database hosts' exporters first: the report keeps the first 300 characters.
    down = [f"{t['labels'].get('job')} {t['labels'].get('instance')} "
            f"({(t.get('lastError') or 'not scraped yet')[-60:]})"
            for t in sorted(active, key=lambda t: t["labels"].get("job") not in ("bgdb", "node"))
            if t["health"] != "up"]
    assert not down, f"{monitor.name}: scrape targets not up: {'; '.join(down)}"


def test_prometheus_rules_loaded(monitor: Target) -> None:
    groups = api(monitor, PROMETHEUS_PORT, "/api/v1/rules")["data"]["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    broken = [f"{r['name']}: {r.get('lastError')}" for g in groups for r in g["rules"]
              if r.get("health") == "err"]
    missing = sorted(set(promql.rule_exprs()) - loaded)
    assert not missing, f"{monitor.name}: rules of alerts/ not loaded by Prometheus: " \
        f"{', '.join(missing)}"
    assert not broken, f"{monitor.name}: rules failing to evaluate: {'; '.join(broken)}"


def test_alertmanager_reachable(monitor: Target) -> None:
    status = api(monitor, ALERTMANAGER_PORT, "/api/v2/status")
    assert status.get("uptime"), f"{monitor.name}: Alertmanager status has no uptime: {status}"
    ams = api(monitor, PROMETHEUS_PORT, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    assert ams, f"{monitor.name}: Prometheus knows no active Alertmanager"


def test_pgbadger_timer_active(db: Target) -> None:
    """The pgBadger report is brought up to date on schedule, and its last run did not fail."""
    if not pgbadger_settings(Data(db.inv.data)).enabled:
        pytest.skip("pgbadger_enabled is False")
    timer = db.host.service(f"{PGBADGER_UNIT}.timer")
    assert timer.is_enabled and timer.is_running, \
        f"{db.name}: {PGBADGER_UNIT}.timer is not active (enabled: {timer.is_enabled})"
    result = db.host.run(f"systemctl show -p Result --value {PGBADGER_UNIT}.service")
    assert result.stdout.strip() in ("success", ""), \
        f"{db.name}: the last pgBadger run failed:\n{db.journal(PGBADGER_UNIT, 15)}"


def test_node_exporter_port_firewalled(backup_host: Target) -> None:
    """A backup host's node exporter is open to the monitoring networks only (a database host's
    is in its database firewall, table inet bgdb)"""
    data = Data(backup_host.inv.data)
    if not monitoring_settings(data).node_exporter:
        pytest.skip("monitoring_node_exporter is False")
    if not postgres_settings(data).firewall:
        pytest.skip("postgres_firewall is False")
    if set(DB_GROUPS) & set(backup_host.inv.groups):
        pytest.skip("also a database host: its database firewall holds the port")
    wrong = nft.port_limited(backup_host, NODE_FIREWALL.table, NODE_EXPORTER_PORT, "allowed")
    assert wrong is None, wrong
