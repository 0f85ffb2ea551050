"""Grafana dashboards as code: `python -m bgdb.dashboards` writes dashboards/*.json from the panel
tables below (`--check`: fail if a file is out of date). Plain dicts in Grafana's dashboard JSON
model (schemaVersion 39); dashboards/dashboard.schema.json is the schema the unit tests hold
every file to, and the integration tests run every panel's every query against a real
Prometheus. Every query selects `instance=~"$instance"`; the drill-down adds `$agent`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "dashboards"
SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
I = 'instance=~"$instance"'  # noqa: E741 - the selector every query carries
A = f'{I}, agent_id=~"$agent"'


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (expr, legend)
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    description: str = ""


def _q(expr: str, legend: str) -> tuple[str, str]:
    return (expr, legend)


AGENTS = (
    Panel("Agents by state", (_q(f"sum by (state) (bgdb_agents{{{I}}})", "{{state}}"),),
          description="Running, idle, error... from the agents table."),
    Panel("Heartbeat age distribution", (
        _q(f"bgdb_agent_last_heartbeat_age_seconds{{{I}}}", "{{agent_id}}"),),
        kind="histogram", unit="s",
        description="Seconds since each agent's last heartbeat (agents not stopped)."),
    Panel("Missed heartbeats", (
        _q(f"max by (instance) (bgdb_agents_missed_heartbeats_max{{{I}}})", "worst agent"),
        _q(f"sum by (instance) (bgdb_agent_missed_heartbeats{{{I}}} > bool 2)",
           "agents over 2 missed")),
        description="Alert BgdbAgentHeartbeatMissed: more than 2 missed beats."),
    Panel("Operation error rate (5 min)", (
        _q(f"bgdb_operation_error_ratio{{{I}}}", "error ratio"),), unit="percentunit",
        description="ERROR/CRITICAL share of operations; the seed's KPI is 5 %."),
    Panel("Backlog: messages and help requests", (
        _q(f"bgdb_agent_messages_pending{{{I}}}", "messages pending"),
        _q(f"bgdb_help_requests_pending{{{I}}}", "help requests pending"),
        _q(f"bgdb_agent_messages_oldest_pending_age_seconds{{{I}}}", "oldest message (s)")),
        description="Unprocessed messages and pending help requests."),
    Panel("Heartbeats and events (5 min)", (
        _q(f"bgdb_agent_heartbeats_5m{{{I}}}", "heartbeats"),
        _q(f"sum by (instance) (bgdb_system_events_5m{{{I}}})", "events")),),
)

DATABASE = (
    Panel("PgBouncer pool utilisation", (
        _q(f"max by (instance, database) (bgdb:pgbouncer_pool:utilization{{{I}}})",
           "{{database}}"),
        _q(f"bgdb:pg_connections:utilization{{{I}}}", "PostgreSQL connections")),
        unit="percentunit", description="Seed KPI: pool utilisation under 80 %."),
    Panel("Statement latency p95", (
        _q(f"bgdb:statement_latency_seconds:p95_5m{{{I}}}", "p95"),), unit="s",
        description="From pg_stat_statements (exporters/latency.py); seed KPI 100 ms."),
    Panel("Transactions per second", (
        _q(f"sum by (instance) (bgdb:pg_xact:rate5m{{{I}}})", "TPS"),), unit="ops"),
    Panel("Locks and blocking", (
        _q(f"bgdb_pg_lock_wait_ratio{{{I}}}", "lock wait ratio"),
        _q(f"bgdb_pg_blocked_queries{{{I}}}", "blocked queries"),
        _q(f"bgdb_pg_blocking_backends{{{I}}}", "blocking backends"))),
    Panel("Replication lag", (
        _q(f"max by (instance, application_name) "
           f"(bgdb_pg_replication_replay_lag_seconds{{{I}}})", "{{application_name}}"),
        _q(f"bgdb_pg_replica_lag_seconds{{{I}}}", "replica lag")), unit="s",
        description="On the primary per standby; on a standby its own replay lag."),
    Panel("WAL archiver", (
        _q(f"bgdb_pg_archiver_last_archive_age_seconds{{{I}}}", "last archived (s ago)"),
        _q(f"increase(bgdb_pg_archiver_failed_total{{{I}}}[15m])", "failures (15 min)"),
        _q(f"bgdb_pg_archiver_ready_wal_files{{{I}}}", "ready to archive"))),
    Panel("Backup age", (
        _q(f"bgdb_backup_last_age_seconds{{{I}}}", "last backup"),
        _q(f"bgdb_backup_last_full_age_seconds{{{I}}}", "last full backup"),
        _q(f"bgdb_dump_last_age_seconds{{{I}}}", "last dump")), unit="s"),
    Panel("Disk space available", (
        _q('node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|squashfs|devtmpfs"} / '
           'node_filesystem_size_bytes{fstype!~"tmpfs|ramfs|squashfs|devtmpfs"}',
           "{{host}} {{mountpoint}}"),), unit="percentunit",
        description="node exporter; alert BgdbDiskSpaceLow under 10 %."),
    Panel("Database size and cache hit ratio", (
        _q(f"bgdb_pg_database_size_bytes{{{I}}}", "{{datname}} bytes"),
        _q(f"bgdb_pg_cache_hit_ratio{{{I}}}", "{{datname}} hit ratio"))),
    Panel("Up", (_q(f"bgdb_up{{{I}}}", "PostgreSQL"), _q(f"bgdb_pgbouncer_up{{{I}}}",
                                                          "PgBouncer"))),
)

AGENT = (
    Panel("Seconds since last heartbeat", (
        _q(f"bgdb_agent_last_heartbeat_age_seconds{{{A}}}", "{{agent_id}}"),), unit="s"),
    Panel("Missed heartbeats", (
        _q(f"bgdb_agent_missed_heartbeats{{{A}}}", "{{agent_id}}"),)),
    Panel("Errors", (_q(f"bgdb_agent_error_count{{{A}}}", "{{agent_id}}"),)),
    Panel("Uptime", (_q(f"bgdb_agent_uptime_seconds{{{A}}}", "{{agent_id}}"),), unit="s"),
)


def _variable(name: str, label: str, query: str, *, multi: bool) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "refresh": 2, "includeAll": multi, "multi": multi, "sort": 1,
            "current": {"text": "All", "value": "$__all"} if multi else {}}


def _templating(agent: bool) -> dict[str, Any]:
    variables: list[dict[str, Any]] = [
        {"name": "datasource", "label": "Prometheus", "type": "datasource",
         "query": "prometheus", "current": {}},
        _variable("instance", "Instance", "label_values(bgdb_up, instance)", multi=True),
    ]
    if agent:
        variables.append(_variable(
            "agent", "Agent",
            'label_values(bgdb_agent_last_heartbeat_age_seconds{instance=~"$instance"}, '
            "agent_id)", multi=False))
    return {"list": variables}


def _panel(i: int, p: Panel, x: int, y: int) -> dict[str, Any]:
    return {
        "id": i + 1, "type": p.kind, "title": p.title, "description": p.description,
        "datasource": DS, "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [{"refId": chr(ord("A") + j), "datasource": DS, "expr": expr,
                     "legendFormat": legend, "range": True}
                    for j, (expr, legend) in enumerate(p.exprs)],
    }


def dashboard(uid: str, title: str, panels: tuple[Panel, ...], *, agent: bool = False
              ) -> dict[str, Any]:
    out, x, y = [], 0, 0
    for i, p in enumerate(panels):
        if x + p.width > 24:
            x, y = 0, y + 8
        out.append(_panel(i, p, x, y))
        x += p.width
    return {
        "uid": uid, "title": title, "tags": ["bgdb"], "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True,
        "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
        "templating": _templating(agent), "annotations": {"list": []}, "panels": out,
    }


DASHBOARDS = {
    "bgdb-agents.json": dashboard("bgdb-agents", "bgdb: agents overview", AGENTS),
    "bgdb-database.json": dashboard("bgdb-database", "bgdb: database overview", DATABASE),
    "bgdb-agent.json": dashboard("bgdb-agent", "bgdb: single agent", AGENT, agent=True),
}


def render(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=2) + "\n"


def main(argv: list[str]) -> int:
    stale = [n for n, d in DASHBOARDS.items()
             if not (OUT / n).exists() or (OUT / n).read_text() != render(d)]
    if "--check" in argv:
        for name in stale:
            print(f"dashboards/{name} is out of date: run python -m bgdb.dashboards",
                  file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        (OUT / name).write_text(render(DASHBOARDS[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
