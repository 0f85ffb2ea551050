"""The monitoring deploy on a lab of its own: db1 (primary and `monitoring`), rep1 (a streaming
replica, so the replication panels have data) and bk (a backup host, whose node exporter
Prometheus scrapes through its firewall). Dashboards' queries against the real Prometheus, metric
names, alerts delivered end to end by webhook and by mail, pgBadger, and the monitoring readiness
checks broken one by one.

The lab is deployed once with real settings an operator would use for fast alerting (5 s scrape
and evaluation, agents heartbeating every 5 s, Alertmanager's group_wait 1 s), a webhook receiver
and an SMTP relay with a login (tests/integration/monitoring/smtp_sink.py), both on this machine's
bridge address, which record what Alertmanager sends. Agents run through PgBouncer while the
tests look.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from background_agents.agent_api import AgentClient
from background_agents.config import AdapterConfig
from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter
from bgdb import dashboards, promql, report
from deploy.monitoring_config import PROMETHEUS_PORT, SMTP_PASSWORD_ENV, SMTP_PASSWORD_FILE
from deploy.runner import run_deploy
from sandbox import hosts as sandbox_hosts
from sandbox import paths
from tests.integration.background_agents.test_through_pgbouncer import seed_env
from tests.integration.checks.test_readiness_breaks_ops import capture, run_checks
from tests.integration.monitoring.smtp_sink import SmtpSink
from tests.sandbox_fixtures import LAB, Deployed, booted_lab

REPO = Path(__file__).resolve().parents[3]
INTERVAL = 5  # scrape, evaluation and the agents' heartbeat interval, seconds
FAST = {"monitoring_scrape_interval_seconds": INTERVAL,
        "monitoring_evaluation_interval_seconds": INTERVAL,
        "monitoring_alert_group_wait_seconds": 1,
        "exporter_heartbeat_interval_seconds": INTERVAL}
SPECS = [sandbox_hosts.HostSpec("db1", ("postgres_primary", "monitoring")),
         sandbox_hosts.HostSpec("rep1", ("postgres_replicas",)),
         sandbox_hosts.HostSpec("bk", ("backup",))]
# Used by a rule, exported only after an event the lab has not had (its archiver has not failed,
# the weekly verify has not run). No dashboard panel uses them: every panel has data.
CONDITIONAL = {
    "bgdb_backup_verify_last_ok": "after the weekly pgbackrest verify has run",
    "bgdb_pg_archiver_last_failed_timestamp_seconds": "after an archive_command failure",
}
# Used by a rule, exported by a component this lab does not run: etcd's own metrics, scraped
# (Prometheus job etcd) only where postgres_ha is on (tests/integration/ha runs that layout).
HA_ONLY = {"etcd_server_has_leader": "etcd's metrics listener, job etcd in HA mode",
           **{f"bgdb_patroni_{n}": "the exporter's Patroni source (patroni_url), HA members only"
              for n in ("up", "dcs_last_seen_age_seconds", "pending_restart")}}
MAIL_TO, MAIL_FROM, SMTP_USER = "oncall@example.org", "alertmanager@example.org", "bgdb-alerts"


class Receiver(ThreadingHTTPServer):
    """Alertmanager's webhook receiver: every POSTed notification with its arrival time."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        super().__init__((str(paths.GATEWAY), 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://{paths.GATEWAY}:{self.server_address[1]}/alerts"

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], since: float,
                 timeout: float) -> float | None:
        """Seconds from `since` (monotonic) to the first alert matching `pred`, or None."""
        deadline = since + timeout
        while time.monotonic() < deadline:
            for at, body in list(self.received):
                if at >= since and any(pred(a) for a in body.get("alerts", [])):
                    return at - since
            time.sleep(0.5)
        return None


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert isinstance(self.server, Receiver)
        self.server.received.append((time.monotonic(), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Fleet:
    """Agents writing through PgBouncer in a thread: heartbeats, messages, help, events, LLM."""
    env: dict[str, str]
    prefix: str = field(default_factory=lambda: f"mon-{uuid.uuid4().hex[:8]}")
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        t.start()
        return t

    async def _run(self) -> None:
        db = PostgreSQLAdapter(AdapterConfig.from_env(self.env))
        try:
            agents = [AgentClient(db, f"{self.prefix}-{i}") for i in range(3)]
            for a in agents:
                await a.register()
            await agents[0].request_help("monitoring test: help wanted")
            await agents[1].record_llm_conversation("test-model", "hi", "hello", tokens_input=10,
                                                    tokens_output=5, cost=0.001)
            while not self.stop.is_set():
                for i, a in enumerate(agents):
                    await a.heartbeat()
                    await a.log_event("cycle", severity="ERROR" if i == 2 else "INFO")
                    await a.send_message(agents[(i + 1) % 3].agent_id, "ping", {"n": i})
                await asyncio.sleep(1)
        except Exception as exc:  # the tests report it; a silent thread would hide it
            self.errors.append(repr(exc))
        finally:
            await db.close()


@dataclass
class Stack:
    deployed: Deployed
    receiver: Receiver
    sink: SmtpSink
    smtp_password: str
    deploy_output: str
    fleet: Fleet
    heartbeats_stopped: float | None = None  # monotonic, set by the heartbeat alert test

    def address(self, short: str) -> str:
        return next(h.address for h in self.deployed.lab.hosts if h.name.endswith(f"-{short}"))

    @property
    def prometheus(self) -> str:
        return f"http://{self.deployed.primary.address}:{PROMETHEUS_PORT}"

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.prometheus}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=20) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{params}: HTTP {exc.code} {exc.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]

    def ssh(self, command: str, host: str = "db1") -> str:
        return capture(self.deployed, command, self.address(host))

    def wait(self, what: str, pred: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(1)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    receiver, sink = Receiver(), SmtpSink(str(paths.GATEWAY))
    password = uuid.uuid4().hex  # the relay's login password, as an operator would set it
    settings = {**FAST, "monitoring_alert_webhook_urls": [receiver.url],
                "monitoring_alert_email_to": [MAIL_TO], "monitoring_smtp_from": MAIL_FROM,
                "monitoring_smtp_smarthost": f"{paths.GATEWAY}:{sink.port}",
                "monitoring_smtp_auth_username": SMTP_USER,
                # the sink has no STARTTLS: a relay on a trusted network
                "monitoring_smtp_require_tls": False}
    started = time.monotonic()
    with booted_lab(LAB, SPECS) as booted:
        for server in (receiver, sink):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        fleet = None
        try:  # the agents and the receivers stop before the lab goes
            env = {"BGDB_LAB": booted.name}
            result = run_deploy({**env, "BGDB_EXTRA_DATA": json.dumps(settings),
                                 SMTP_PASSWORD_ENV: password})
            assert result.returncode == 0 and not result.errors, result.output[-6000:]
            print(f"\nlab {booted.name} (primary+monitoring, replica, backup host) up and "
                  f"deployed with fast monitoring settings: {time.monotonic() - started:.1f} s")
            deployed = Deployed(booted, result, env)
            fleet = Fleet(seed_env(deployed))
            fleet.start()
            s = Stack(deployed, receiver, sink, password, result.output, fleet)
            # Every agent series in Prometheus, and two scrapes after it for the rates.
            s.wait("the agents' series in Prometheus", lambda: any(
                r["metric"].get("agent_id", "").startswith(fleet.prefix) for r in s.api(
                    "/api/v1/query", query="bgdb_agent_last_heartbeat_age_seconds")["result"]))
            time.sleep(3 * INTERVAL)
            yield s
        finally:
            if fleet:
                fleet.stop.set()
            receiver.shutdown()
            sink.shutdown()


def _regex(value: str) -> str:
    """A label value as a regex inside a PromQL string, as Grafana escapes it (`\\.`)."""
    return re.escape(value).replace("\\", "\\\\")


def _variables(stack: Stack, dash: dict[str, Any], prefix: str) -> dict[str, str]:
    """Each query variable's value as Grafana would set it: label_values(metric, label) through
    the label values API; `instance` = All (a regex of every value), `agent` = one of ours."""
    values: dict[str, str] = {}
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert m, var
        selector = m.group(1)
        for name, value in values.items():
            selector = selector.replace(f"${name}", value)
        found = stack.api(f"/api/v1/label/{m.group(2)}/values", **{"match[]": selector})
        assert found, f"variable {var['name']}: {var['query']['query']} has no value"
        if var.get("multi"):
            values[var["name"]] = "|".join(_regex(v) for v in found)
        else:
            ours = [v for v in found if v.startswith(prefix)]
            values[var["name"]] = _regex((ours or found)[0])
    return values


def test_every_panel_query_returns_data(stack: Stack) -> None:
    """Every panel's every query, variables substituted, over the last 5 minutes as a Grafana
    range query: each returns data (the replication panels from the lab's replica)."""
    end = time.time()
    panels = queries = 0
    empty: list[str] = []
    for name, dash in dashboards.DASHBOARDS.items():
        values = _variables(stack, dash, stack.fleet.prefix)
        for panel in dash["panels"]:
            panels += 1
            for target in panel["targets"]:
                queries += 1
                expr = target["expr"]
                for var, value in values.items():
                    expr = expr.replace(f"${var}", value)
                data = stack.api("/api/v1/query_range", query=expr, start=str(end - 300),
                                 end=str(end), step=str(INTERVAL))
                if not data["result"]:
                    empty.append(f"{name} '{panel['title']}' {target['refId']}: {expr}")
    print(f"\ndashboards: {len(dashboards.DASHBOARDS)}, panels: {panels}, queries: {queries} "
          f"evaluated; with data: {queries - len(empty)}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert panels >= 20 and queries >= 30


def test_every_metric_used_is_exported_in_the_lab(stack: Stack) -> None:
    have = set(stack.api("/api/v1/label/__name__/values"))
    used = promql.used_names()
    missing = {n: sorted(w) for n, w in used.items()
               if n not in have and n not in CONDITIONAL and n not in HA_ONLY}
    assert not missing, f"used but not exported by anything in the lab: {missing}"
    # The HA-only names come from the etcd job, which the generated prometheus.yml scrapes.
    assert '"job_name": "etcd"' in (REPO / "deploy" / "monitoring_config.py").read_text()
    source = "\n".join(p.read_text() for p in [*(REPO / "exporters").glob("*.py"),
                                                *(REPO / "sql" / "exporter").glob("*.sql")])
    undeclared = [n for n in [*CONDITIONAL, *(n for n in HA_ONLY if n.startswith("bgdb_"))]
                  if n not in source]
    assert not undeclared, f"not declared by the exporter: {undeclared}"
    print(f"\nmetric names used by rules and dashboards: {len(used)}; in the lab's Prometheus: "
          f"{len(set(used) & have)}; exported only {len(CONDITIONAL)} under a condition, "
          f"{len(HA_ONLY)} in HA mode only")


def _alert(name: str, **labels: str) -> Callable[[dict[str, Any]], bool]:
    def match(a: dict[str, Any]) -> bool:
        return a.get("status") == "firing" and a["labels"].get("alertname") == name and all(
            re.match(v, a["labels"].get(k, "")) for k, v in labels.items())
    return match


def test_heartbeats_stopped_alert_is_delivered(stack: Stack) -> None:
    """Missed > 2 beats of 5 s: true 15 s after the last beat, then one scrape, one evaluation
    and group_wait before the receiver has it."""
    bound = 3 * INTERVAL + INTERVAL + INTERVAL + 1 + 10  # + 10 s for the HTTP hops and clocks
    stack.fleet.stop.set()
    stopped = stack.heartbeats_stopped = time.monotonic()
    took = stack.receiver.wait_for(
        _alert("BgdbAgentHeartbeatMissed", agent_id=re.escape(stack.fleet.prefix)), stopped,
        bound + 30)
    assert not stack.fleet.errors, stack.fleet.errors
    print(f"\nheartbeats stopped -> BgdbAgentHeartbeatMissed at the receiver: {took} s "
          f"(bound {bound} s)")
    assert took is not None and took <= bound, f"not delivered within {bound} s: {took}"


def test_alert_mail_arrives_by_smtp(stack: Stack) -> None:
    """The same alert as a mail through the SMTP relay, logged in with the operator's password,
    which is in no deploy output and no file others can read."""
    assert stack.heartbeats_stopped is not None, "runs after the heartbeat alert test"
    mail = stack.sink.wait_for("BgdbAgentHeartbeatMissed", stack.heartbeats_stopped, 90)
    assert mail is not None, "no alert mail at the SMTP relay within 90 s"
    print(f"\nheartbeats stopped -> BgdbAgentHeartbeatMissed mail at the SMTP relay: "
          f"{mail.at - stack.heartbeats_stopped:.1f} s")
    assert mail.login == (SMTP_USER, stack.smtp_password), "logged in with the wrong credentials"
    assert (mail.sender, mail.recipients) == (MAIL_FROM, [MAIL_TO])
    assert str(mail.message["To"]) == MAIL_TO and stack.fleet.prefix in mail.text
    assert stack.smtp_password not in stack.deploy_output
    assert stack.ssh(f"stat -c '%a %U %G' {SMTP_PASSWORD_FILE}").split() == [
        "640", "root", "prometheus"]
    leaked = stack.ssh(f"grep -rlF {stack.smtp_password} /etc /var/log || true").split()
    assert leaked == [SMTP_PASSWORD_FILE], f"the SMTP password is in {leaked}"


def test_database_down_alert_is_delivered(stack: Stack) -> None:
    """BgdbPostgresDown (for: 1m): bgdb_up is 0 from the next scrape, then 1 minute."""
    bound = 60 + 2 * INTERVAL + 1 + 2 + 10  # for + scrape + evaluation + group_wait + timeout
    cluster = stack.ssh("pg_lsclusters -h | awk '{print $1\"-\"$2}' | head -1").strip()
    stack.ssh(f"systemctl stop postgresql@{cluster}")
    stopped = time.monotonic()
    try:
        took = stack.receiver.wait_for(_alert("BgdbPostgresDown"), stopped, bound + 30)
    finally:
        stack.ssh(f"systemctl start postgresql@{cluster}")
    print(f"\nPostgreSQL stopped -> BgdbPostgresDown at the receiver: {took} s (bound {bound} s)")
    assert took is not None and took <= bound, f"not delivered within {bound} s: {took}"
    stack.wait("bgdb_up 1 again", lambda: {r["value"][1] for r in stack.api(
        "/api/v1/query", query="bgdb_up")["result"]} == {"1"}, timeout=60)


def test_pgbadger_report_lists_a_slow_statement(stack: Stack) -> None:
    marker = f"bgdb_slow_{uuid.uuid4().hex[:10]}"
    stack.ssh("runuser -u postgres -- psql -XAtq -d background_agents -c "
              f"\"SELECT pg_sleep(1.1), '{marker}'\"")
    out = subprocess.run([str(REPO / ".venv" / "bin" / "bgdb"), "report"], cwd=REPO,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, **stack.deployed.env})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pgBadger report of" in out.stdout, out.stdout
    day = report.latest_day(report.DEST / stack.deployed.primary.name)
    assert day is not None, out.stdout
    assert marker in day.read_text(errors="replace"), f"{marker} not in {day}"


_CONNECT = ("python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], 9100), 5)' "
            "{} && echo open || echo closed")


def test_backup_host_node_exporter_scraped_through_its_firewall(stack: Stack) -> None:
    """Prometheus (db1) scrapes bk's node exporter; the replica host, outside the monitoring
    networks, is refused by bk's firewall."""
    bk = stack.address("bk")
    up = stack.api("/api/v1/query", query=f'up{{job="node",instance="{bk}:9100"}}')["result"]
    assert [r["value"][1] for r in up] == ["1"], f"bk's node exporter not scraped: {up}"
    disk = stack.api("/api/v1/query", query=f'node_filesystem_avail_bytes{{instance="{bk}:9100"}}')
    assert disk["result"], "no disk figures from bk's node exporter"
    assert stack.ssh(_CONNECT.format(bk)).strip() == "open"
    assert stack.ssh(_CONNECT.format(bk), "rep1").strip() == "closed"


@dataclass(frozen=True)
class Break:
    check: str
    breaks: str
    restores: str
    message: str
    settle: float = 0  # seconds for Prometheus to notice (scrapes)
    host: str = "db1"


BREAKS = [
    Break("test_prometheus_targets_up", "systemctl stop prometheus-node-exporter",
          "systemctl start prometheus-node-exporter", r"scrape targets not up: node [0-9.]+:9100 ",
          settle=3 * INTERVAL),
    Break("test_prometheus_rules_loaded",
          "mv /etc/prometheus/bgdb/rules/bgdb.rules.yml /root/ && systemctl reload prometheus",
          "mv /root/bgdb.rules.yml /etc/prometheus/bgdb/rules/ && systemctl reload prometheus",
          r"rules of alerts/ not loaded by Prometheus: Bgdb", settle=2),
    Break("test_alertmanager_reachable", "systemctl stop prometheus-alertmanager",
          "systemctl start prometheus-alertmanager", r":9093/api/v2/status does not answer"),
    Break("test_pgbadger_timer_active", "systemctl stop bgdb-pgbadger.timer",
          "systemctl start bgdb-pgbadger.timer", r"bgdb-pgbadger.timer is not active"),
    Break("test_node_exporter_port_firewalled", "systemctl stop bgdb-node-firewall",
          "systemctl start bgdb-node-firewall", r"-bk: nftables table inet bgdb_node is missing",
          host="bk"),
]


def test_monitoring_checks_fail_when_broken(stack: Stack, tmp_path: Path) -> None:
    """Five breakages at once, one run of the checks: each check fails with its own message."""
    for b in BREAKS:
        stack.ssh(b.breaks, b.host)
    try:
        time.sleep(max(b.settle for b in BREAKS))
        code, text = run_checks(stack.deployed, tmp_path, " or ".join(b.check for b in BREAKS))
        assert code != 0, text
        for b in BREAKS:
            assert re.search(b.message, text), f"{b.check}: no {b.message!r} in:\n{text}"
    finally:
        for b in BREAKS:
            stack.ssh(b.restores, b.host)


def test_monitoring_readiness_checks_pass(stack: Stack, tmp_path: Path) -> None:
    """Last, after the breakages: everything they broke is back (Prometheus re-scrapes first)."""
    time.sleep(2 * INTERVAL)
    code, text = run_checks(stack.deployed, tmp_path, "test_monitoring or test_pgbadger")
    assert code == 0 and "0 failed" in text, text
    assert text.count("| PASSED |") >= 6, text
