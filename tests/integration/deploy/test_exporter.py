"""The exporter on a real sandbox host, scraped by a real Prometheus server (Debian's
/usr/bin/prometheus, started here on 127.0.0.1) that loads alerts/bgdb.rules.yml as it is.

Order matters and follows the file: the deploy and the readiness checks are tested on the
default settings first; then the exporter is redeployed with a 3-second heartbeat interval for
the Prometheus tests and put back at the end. Every wait is bounded.

No rule is rewritten: BgdbAgentHeartbeatMissed has no `for:` and fires at the first evaluation
that sees more than 2 missed beats; BgdbPostgresDown (`for: 1m`) is shown going pending, which is
the rule matching; the minute it then waits is Prometheus's own logic, not ours to test.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.sandbox_fixtures import Deployed

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "alerts" / "bgdb.rules.yml"
PROMETHEUS = "/usr/bin/prometheus"
PORT = 9847
UNIT = "bgdb-exporter"
PG_UNIT = "postgresql@15-main"
INTERVAL = 3  # exporter_heartbeat_interval_seconds for the alert test
T = TypeVar("T")


def ssh(deployed: Deployed, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(deployed.ssh_config()), deployed.primary.address,
                           command], capture_output=True, text=True, timeout=timeout)


def on_primary(deployed: Deployed, command: str) -> str:
    out = ssh(deployed, command)
    assert out.returncode == 0, f"{command}: rc={out.returncode} {out.stderr}"
    return out.stdout.strip()


def psql(deployed: Deployed, sql: str) -> str:
    return on_primary(deployed, "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 "
                      f"-d background_agents -c {shlex.quote(sql)}")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float,
             every: float = 0.5) -> tuple[T, float]:
    """(the first truthy result of probe, seconds it took); fails after `timeout` seconds."""
    start = time.monotonic()
    last: Any = None
    while time.monotonic() - start < timeout:
        try:
            result = probe()
        except (OSError, ValueError) as exc:  # not up yet, connection refused, bad answer
            last = exc
        else:
            if result:
                return result, time.monotonic() - start
            last = result
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def fetch(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def metric(body: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_checks(deployed: Deployed, tmp_path: Path, select: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "checks/test_exporter.py", "-k", select,
           f"--readiness-report={tmp_path / 'readiness.md'}"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **deployed.env})


def service_pid(deployed: Deployed) -> str:
    return on_primary(deployed, f"systemctl show -p MainPID --value {UNIT}")


# --- the deploy and the readiness checks, on the default settings -----------------------------

def test_deploy_installs_and_enables_the_exporter(deployed: Deployed) -> None:
    changed = [op for op in deployed.first.changed if op.startswith("Install the bgdb exporter")]
    assert "Install the bgdb exporter | Keep the exporter running and enabled" in changed, \
        deployed.first.changed
    assert on_primary(deployed, f"systemctl is-enabled {UNIT}") == "enabled"
    assert on_primary(deployed, f"systemctl is-active {UNIT}") == "active"
    # The other deploys' files under /usr/local/lib/bgdb survive our syncs.
    listing = on_primary(deployed, "ls /usr/local/lib/bgdb /usr/local/lib/bgdb/sql")
    for name in ("bgdb", "exporters", "exporter", "migrations", "maintenance", "roles.sql"):
        assert name in listing.split(), f"{name} missing under /usr/local/lib/bgdb: {listing}"
    # Its login is the monitor role over the local socket; the endpoint is on the service address.
    status, body = fetch(f"http://{deployed.primary.address}:{PORT}/metrics")
    assert status == 200 and metric(body, "bgdb_up") == 1.0, body[:500]
    assert metric(body, "bgdb_pgbouncer_up") == 1.0, "PgBouncer's console is not scraped"
    assert metric(body, "bgdb_backup_status_ok") == 1.0, "the backup status file is not read"


def test_second_deploy_changes_nothing_and_keeps_the_exporter_running(deployed: Deployed) -> None:
    pid = service_pid(deployed)
    again = deployed.deploy()
    assert again.returncode == 0, again.output[-3000:]
    assert again.changed == [], f"second deploy changed: {again.changed}"
    assert service_pid(deployed) == pid, "a no-change deploy restarted the exporter"


def test_exporter_port_closed_to_hosts_outside_monitoring(deployed: Deployed) -> None:
    probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{deployed.primary.address}/{PORT}' && echo open"
    outside = subprocess.run(["ssh", "-F", str(deployed.ssh_config()), deployed.node(3).address,
                              probe], capture_output=True, text=True, timeout=60)
    assert outside.stdout.strip() != "open" and "refused" in outside.stderr


def test_checks_pass(deployed: Deployed, tmp_path: Path) -> None:
    out = run_checks(deployed, tmp_path, "exporter or alert_rules")
    assert out.returncode == 0, out.stdout[-3000:]
    assert (tmp_path / "readiness.md").read_text().count("| PASSED |") == 5


def test_check_fails_clearly_when_the_exporter_is_stopped(deployed: Deployed,
                                                          tmp_path: Path) -> None:
    on_primary(deployed, f"systemctl stop {UNIT}")
    try:
        out = run_checks(deployed, tmp_path, "exporter_running or exporter_metrics")
        assert out.returncode == 1, f"the checks passed with the exporter stopped:\n{out.stdout}"
        report = (tmp_path / "readiness.md").read_text()
        assert f"{UNIT} is not running" in report, report
        assert f"{deployed.primary.address}:{PORT}/metrics answered nothing" in report, report
    finally:
        on_primary(deployed, f"systemctl start {UNIT}")
    wait_for("exporter back", lambda: fetch(f"http://{deployed.primary.address}:{PORT}/metrics",
                                             timeout=3)[0] == 200, 30)
    again = run_checks(deployed, tmp_path, "exporter_running or exporter_metrics")
    assert again.returncode == 0, f"not restored:\n{again.stdout[-2000:]}"


# --- a real Prometheus server ---------------------------------------------------------------

@dataclass
class Prometheus:
    url: str
    target: str

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = fetch(f"{self.url}/api/v1/{path}{query}")
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", body[:500]
        return doc["data"]

    def value(self, expr: str) -> float | None:
        result = self.api("query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def alerts(self, name: str, **labels: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name
                and all(a["labels"].get(k) == v for k, v in labels.items())]


@pytest.fixture(scope="module")
def short_heartbeats(deployed: Deployed) -> Iterator[None]:
    """The exporter redeployed with a 3 s heartbeat interval (a config change: one restart)."""
    pid = service_pid(deployed)
    result = deployed.deploy(json.dumps({"exporter_heartbeat_interval_seconds": INTERVAL}))
    try:
        assert result.returncode == 0, result.output[-3000:]
        assert result.changed == [
            "Install the bgdb exporter | Write the exporter's configuration",
            "Install the bgdb exporter | Restart the exporter (its files changed)",
        ], result.changed
        assert service_pid(deployed) != pid, "the exporter was not restarted on a new config"
        yield
    finally:
        restored = deployed.deploy()
        assert restored.returncode == 0, restored.output[-3000:]


@pytest.fixture(scope="module")
def prometheus(deployed: Deployed, short_heartbeats: None,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    assert Path(PROMETHEUS).exists(), "prometheus is missing (apt package prometheus)"
    work = tmp_path_factory.mktemp("prometheus")
    target = f"{deployed.primary.address}:{PORT}"
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        # The job name the rules assume.
        "scrape_configs": [{"job_name": "bgdb", "static_configs": [{"targets": [target]}]}],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = open(work / "prometheus.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    prom = Prometheus(f"http://127.0.0.1:{port}", target)
    try:
        wait_for("Prometheus ready", lambda: fetch(f"{prom.url}/-/ready", 2)[0] == 200, 30)
        yield prom
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_prometheus_loads_the_rules_and_scrapes_the_exporter(prometheus: Prometheus) -> None:
    groups = {g["name"] for g in prometheus.api("rules")["groups"]}
    assert {"bgdb.availability", "bgdb.agents", "bgdb.kpis"} <= groups, groups
    up = f'up{{job="bgdb",instance="{prometheus.target}"}}'
    wait_for("target up", lambda: prometheus.value(up) == 1.0, 30)
    wait_for("bgdb_up 1", lambda: prometheus.value('bgdb_up{job="bgdb"}') == 1.0, 30)
    # Recording rules evaluate on the scraped series.
    wait_for("connection utilization recorded",
             lambda: prometheus.value("bgdb:pg_connections:utilization") is not None, 30)
    assert prometheus.value("bgdb_exporter_heartbeat_interval_seconds") == INTERVAL


def test_agent_that_stops_beating_fires_the_missed_heartbeat_alert(
        deployed: Deployed, prometheus: Prometheus) -> None:
    tag = uuid.uuid4().hex[:8]
    silent, alive = f"exp-silent-{tag}", f"exp-alive-{tag}"

    def beat(*agents: str) -> None:
        values = ", ".join(f"('{a}', now(), 'running')" for a in agents)
        ids = ", ".join(f"'{a}'" for a in agents)
        psql(deployed, f"INSERT INTO agent_heartbeats (agent_id, timestamp, state) VALUES {values};"
             f" UPDATE agents SET last_heartbeat = now() WHERE agent_id IN ({ids})")

    psql(deployed, "INSERT INTO agents (agent_id, name, type, state, started_at, last_heartbeat) "
         f"VALUES ('{silent}', 'silent', 'worker', 'running', now(), now()), "
         f"('{alive}', 'alive', 'worker', 'running', now(), now())")
    try:
        beat(silent, alive)
        last_beat = time.monotonic()  # the silent agent's last heartbeat, from here on
        # Seen beating first: its series is there and no alert while it is within 2 intervals.
        missed, _ = wait_for("silent agent scraped", lambda: prometheus.value(
            f'bgdb_agent_missed_heartbeats{{agent_id="{silent}"}}') is not None, 30, every=0.2)
        assert not prometheus.alerts("BgdbAgentHeartbeatMissed", agent_id=silent)

        def fired() -> list[dict[str, Any]]:
            beat(alive)  # the other agent keeps sending heartbeats all along
            return [a for a in prometheus.alerts("BgdbAgentHeartbeatMissed", agent_id=silent)
                    if a["state"] == "firing"]

        alerts, _ = wait_for("BgdbAgentHeartbeatMissed firing for the silent agent", fired,
                             timeout=60, every=0.5)
        silent_for = time.monotonic() - last_beat
        assert silent_for > 2 * INTERVAL, f"fired after {silent_for:.1f} s: too early"
        assert alerts[0]["labels"]["severity"] == "warning"
        assert float(alerts[0]["value"]) > 2
        assert not prometheus.alerts("BgdbAgentHeartbeatMissed", agent_id=alive), \
            "the agent that kept beating has an alert too"
    finally:
        psql(deployed, f"DELETE FROM agents WHERE agent_id IN ('{silent}', '{alive}')")


def test_postgres_down_gives_bgdb_up_0_while_the_endpoint_answers(
        deployed: Deployed, prometheus: Prometheus) -> None:
    url = f"http://{prometheus.target}/metrics"
    on_primary(deployed, f"systemctl stop {PG_UNIT}")
    try:
        status, body = fetch(url, timeout=10)
        assert status == 200, f"the endpoint stopped answering: {status} {body[:300]}"
        assert metric(body, "bgdb_up") == 0.0, "a scrape with PostgreSQL stopped is not bgdb_up 0"
        assert metric(body, "process_cpu_seconds_total") is not None  # the exporter's own metrics
        wait_for("Prometheus sees bgdb_up 0",
                 lambda: prometheus.value('bgdb_up{job="bgdb"}') == 0.0, 30)
        assert prometheus.value('up{job="bgdb"}') == 1.0, "Prometheus cannot scrape the exporter"
        wait_for("BgdbPostgresDown pending", lambda: prometheus.alerts("BgdbPostgresDown"), 30)
    finally:
        on_primary(deployed, f"systemctl start {PG_UNIT}")
    # It reconnects by itself.
    wait_for("bgdb_up back to 1", lambda: metric(fetch(url)[1], "bgdb_up") == 1.0, 60, every=1)
    wait_for("BgdbPostgresDown resolved", lambda: not prometheus.alerts("BgdbPostgresDown"), 30)
