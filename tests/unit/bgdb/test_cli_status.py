"""bgdb status's derived figures on plain data: missing heartbeats, backup ages, pool use."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from bgdb import status

NOW = 1_800_000_000.0


def agent(agent_id: str, since: float | None) -> dict[str, object]:
    return {"agent_id": agent_id, "name": agent_id, "state": "running",
            "seconds_since_heartbeat": since}


def test_missing_heartbeats_are_older_than_five_minutes_or_never_sent() -> None:
    agents = [agent("fresh", 10.0), agent("edge", 300.0), agent("late", 301.0),
              agent("never", None), agent("later", 9000.0)]
    missing = status.missing_heartbeats(agents)
    assert [a["agent_id"] for a in missing] == ["never", "later", "late"]
    assert [a["agent_id"] for a in status.missing_heartbeats(agents, window=5)] == [
        "never", "later", "late", "edge", "fresh"]


def test_backup_summary_without_status_files_is_none() -> None:
    assert status.backup_summary({}, NOW) is None


def test_backup_summary_ages_and_jobs() -> None:
    files = {
        "backup.json": {
            "pgbackrest_info": [{"status": {"code": 0}, "backup": [
                {"type": "full", "timestamp": {"stop": NOW - 3600}},
                {"type": "diff", "timestamp": {"stop": NOW - 600}},
                {"type": "diff", "error": True, "timestamp": {"stop": NOW - 60}}]}],
            "verify_timestamp": NOW - 86400, "verify_ok": True, "dump_timestamp": NOW - 7200,
        },
        "backup-full.json": {"job": "backup-full", "ok": True, "finished_at": "x",
                             "last_success_timestamp": NOW - 3600, "message": "done"},
        "maintenance-daily.json": {"job": "maintenance-daily", "ok": False,
                                   "last_success_timestamp": None, "message": "boom"},
    }
    s = status.backup_summary(files, NOW)
    assert s is not None
    assert s["any_backup_age_seconds"] == 600
    assert s["full_backup_age_seconds"] == 3600
    assert s["verify_age_seconds"] == 86400 and s["verify_ok"] is True
    assert s["dump_age_seconds"] == 7200
    assert [(j["job"], j["ok"], j["last_success_age_seconds"]) for j in s["jobs"]] == [
        ("backup-full", True, 3600), ("maintenance-daily", False, None)]


def test_backup_summary_reports_an_unreadable_backup_file() -> None:
    s = status.backup_summary({"backup.json": {"verify_ok": "yes"}}, NOW)
    assert s is not None and "verify_ok" in s["error"] and s["jobs"] == []


def test_pool_use_joins_pools_and_sizes_without_the_console() -> None:
    pools = [{"database": "pgbouncer", "user": "pgbouncer", "cl_active": 1},
             {"database": "agents", "user": "app", "cl_active": 12, "cl_waiting": 3,
              "sv_active": 10, "sv_idle": 0, "maxwait": 2, "maxwait_us": 500000}]
    dbs = [{"name": "agents", "pool_size": 10}, {"name": "pgbouncer", "pool_size": 2}]
    assert status.pool_use(pools, dbs) == [{
        "database": "agents", "user": "app", "clients_active": 12, "clients_waiting": 3,
        "servers_active": 10, "servers_idle": 0, "pool_size": 10, "use_percent": 100.0,
        "max_wait_seconds": 2.5}]


def test_render_host_draws_every_section() -> None:
    st: dict[str, Any] = {
        "host": "db1", "address": "10.0.0.1", "role": "primary", "errors": ["x.sql failed"],
        "server": {"server_version": "15.5", "uptime_seconds": 7200},
        "health": {"agents_active": 2, "agents_total": 3, "agents_missing_heartbeat": 1,
                   "database_size_bytes": 1 << 20},
        "active_agents": [dict(agent("a-1", 12.0), uptime_seconds=4000)],
        "recent_heartbeats": [], "missing_heartbeats": [agent("a-2", None)],
        "replication": {"replicas": [], "standby": None},
        "backup": None, "pgbouncer": None,
    }
    console = Console(record=True, width=200)
    console.print(status.render_host(st))
    out = console.export_text()
    for text in ("db1 (10.0.0.1) — primary", "could not read: x.sql failed", "2 / 3",
                 "PostgreSQL 15.5, up 2h 00m", "1h 06m", "12.0s ago",
                 "Agents that missed heartbeats (1)", "never", "no replicas",
                 "Backups: no status files", "PgBouncer: not running"):
        assert text in out, text
