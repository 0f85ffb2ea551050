"""`bgdb status`: per database host, the seed's "System Health Overview", active agents with their
uptime, the recent heartbeats, agents that missed heartbeats, replication lag, the age of the last
backup and PgBouncer's pool use. Collected into plain data (also the `--json` output), then drawn
as tables.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
from rich.console import Group, RenderableType
from rich.text import Text

from bgdb import monitoring, tables
from bgdb.monitoring import Row
from bgdb.targets import OperatorError, reach, role_of
from deploy import secrets
from deploy.hostdata import InventoryHost
from exporters import backup_status

# The monitoring SQL's window: an active agent without a heartbeat for 5 minutes is missing
# (system_health.sql's agents_missing_heartbeat counts the same agents).
HEARTBEAT_WINDOW_SECONDS = 300.0


def missing_heartbeats(active_agents: Sequence[Row],
                       window: float = HEARTBEAT_WINDOW_SECONDS) -> list[Row]:
    """Active agents whose last heartbeat is older than `window` seconds, or who never sent
    one, most overdue first."""
    missing = [a for a in active_agents
               if a.get("seconds_since_heartbeat") is None
               or float(a["seconds_since_heartbeat"]) > window]
    return sorted(missing, key=lambda a: -(a.get("seconds_since_heartbeat") or float("inf")))


def backup_summary(files: dict[str, Any], now: float) -> dict[str, Any] | None:
    """Ages of the last backups and each job's last run, from the jobs' status files
    (backup.json in exporters/backup_status.py's format, <job>.json per job); None without
    any file."""
    if not files:
        return None
    summary: dict[str, Any] = {}
    doc = files.get("backup.json")
    if doc is not None:
        try:
            figures = backup_status.parse(doc)
        except backup_status.BackupStatusError as exc:
            summary["error"] = f"backup.json: {exc}"
            figures = {}
        for key in ("any_backup_timestamp", "full_backup_timestamp", "diff_backup_timestamp",
                    "verify_timestamp", "dump_timestamp"):
            if key in figures:
                name = key.removesuffix("_timestamp")
                summary[f"{name}_age_seconds"] = max(0.0, now - figures[key])
        if "verify_ok" in figures:
            summary["verify_ok"] = bool(figures["verify_ok"])
    jobs = []
    for name, status in sorted(files.items()):
        if name == "backup.json" or not isinstance(status, dict) or "job" not in status:
            continue
        last_ok = status.get("last_success_timestamp")
        jobs.append({
            "job": status["job"], "ok": status.get("ok"), "finished_at": status.get("finished_at"),
            "last_success_age_seconds": (max(0.0, now - float(last_ok))
                                         if isinstance(last_ok, int | float) else None),
            "message": status.get("message"),
        })
    summary["jobs"] = jobs
    return summary


def pool_use(pools: Sequence[Row], databases: Sequence[Row]) -> list[Row]:
    """PgBouncer's pools (SHOW POOLS) with their size (SHOW DATABASES): server connections in
    use of the pool's size, clients waiting; the console's own database left out."""
    size = {d.get("name"): d.get("pool_size") for d in databases}
    out = []
    for p in pools:
        if p.get("database") == "pgbouncer":
            continue
        pool_size = size.get(p.get("database"))
        active = int(p.get("sv_active") or 0)
        out.append({
            "database": p.get("database"), "user": p.get("user"),
            "clients_active": int(p.get("cl_active") or 0),
            "clients_waiting": int(p.get("cl_waiting") or 0),
            "servers_active": active, "servers_idle": int(p.get("sv_idle") or 0),
            "pool_size": pool_size,
            "use_percent": 100.0 * active / pool_size if pool_size else None,
            "max_wait_seconds": float(p.get("maxwait") or 0) + float(p.get("maxwait_us") or 0)
            / 1e6,
        })
    return out


def pgbouncer_section(target: Any) -> dict[str, Any] | None:
    """Pool use when PgBouncer runs on the host; None when it does not; {"error"} if unreadable."""
    if not monitoring.service_active(target, monitoring.PGBOUNCER_UNIT):
        return None
    try:
        shown = monitoring.pgbouncer_console(target)
    except (secrets.SecretError, psycopg.Error, OSError) as exc:
        return {"error": f"PgBouncer console: {monitoring.last_line(str(exc))}"}
    return {"pools": pool_use(shown["SHOW POOLS"], shown["SHOW DATABASES"])}


def collect_host(inv: InventoryHost, *, now: float | None = None) -> dict[str, Any]:
    target = reach(inv)
    out: dict[str, Any] = {"host": inv.name, "address": inv.address, "role": role_of(inv),
                           "errors": []}

    def query(name: str) -> list[Row]:
        try:
            return monitoring.rows(target, name)
        except monitoring.QueryError as exc:
            out["errors"].append(str(exc))
            return []

    server = query("server_info")
    out["server"] = server[0] if server else {}
    health = query("system_health")
    out["health"] = health[0] if health else {}
    out["active_agents"] = query("active_agents")
    out["recent_heartbeats"] = query("recent_heartbeats")
    out["missing_heartbeats"] = missing_heartbeats(out["active_agents"])
    standby = query("replica_lag")
    out["replication"] = {"replicas": query("replicas"), "standby": standby[0] if standby else None}
    try:
        directory, files = monitoring.status_files(target)
        out["backup"] = backup_summary(files, time.time() if now is None else now)
        if out["backup"] is not None:
            out["backup"]["status_dir"] = directory
    except monitoring.QueryError as exc:
        out["errors"].append(str(exc))
        out["backup"] = None
    out["pgbouncer"] = pgbouncer_section(target)
    return out


def collect(hosts: Sequence[InventoryHost]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each reachable host's status, and one line per host that could not be reached."""
    results, problems = [], []
    for inv in hosts:
        try:
            results.append(collect_host(inv))
        except OperatorError as exc:
            problems.append(str(exc))
    return results, problems


# --- drawing -----------------------------------------------------------------------------------

def _health_rows(h: Row, server: Row) -> list[Row]:
    def of(key: str) -> Any:
        return h.get(key, "-")
    return [
        {"item": "Agents active / total", "value": f"{of('agents_active')} / {of('agents_total')}"},
        {"item": "Agents missing heartbeat (5 min)", "value": of("agents_missing_heartbeat")},
        {"item": "Heartbeats, last 5 min", "value": of("heartbeats_last_5m")},
        {"item": "Error events, last hour", "value": of("error_events_last_hour")},
        {"item": "Help requests pending", "value": of("help_requests_pending")},
        {"item": "Messages pending", "value": of("messages_pending")},
        {"item": "Connections (this database) / max",
         "value": f"{of('connections')} / {of('max_connections')}"},
        {"item": "Database size", "value": tables.size(h.get("database_size_bytes"))},
        {"item": "Server", "value": f"PostgreSQL {server.get('server_version', '?')}, up "
                                    f"{tables.duration(server.get('uptime_seconds'))}"},
    ]


def render_host(st: dict[str, Any], limit: int = 50) -> RenderableType:
    parts: list[RenderableType] = [Text(f"\n{st['host']} ({st['address']}) — {st['role']}",
                                        style="bold underline")]
    for err in st["errors"]:
        parts.append(Text(f"could not read: {err}", style="red"))
    parts.append(tables.table("System health", [("", "item", None), ("", "value", None)],
                              _health_rows(st["health"], st["server"]),
                              show_header=False))
    agents = st["active_agents"]
    more = f" (first {limit} of {len(agents)}; --json for all)" if len(agents) > limit else ""
    parts.append(tables.table(f"Active agents{more}", [
        ("agent", "agent_id", None), ("name", "name", None), ("type", "type", None),
        ("state", "state", None), ("uptime", "uptime_seconds", tables.duration),
        ("last heartbeat", "seconds_since_heartbeat", _ago),
        ("hb state", "heartbeat_state", None), ("errors", "heartbeat_error_count", None),
    ], agents[:limit]))
    parts.append(tables.table("Heartbeats, last 5 minutes", [
        ("agent", "agent_id", None), ("heartbeats", "heartbeat_count", None),
        ("errors", "error_count", None), ("last", "seconds_since_heartbeat", _ago),
        ("avg cpu_usage", "avg_cpu_usage", _num), ("avg memory MB", "avg_memory_mb", _num),
    ], st["recent_heartbeats"][:limit]))
    missing = st["missing_heartbeats"]
    parts.append(tables.table(
        f"Agents that missed heartbeats ({len(missing)})", [
            ("agent", "agent_id", None), ("name", "name", None), ("state", "state", None),
            ("last heartbeat", "seconds_since_heartbeat", _ago),
        ], missing[:limit], empty="none: every active agent beat in the last 5 minutes"))
    parts.append(_render_replication(st["replication"]))
    parts.append(_render_backup(st["backup"]))
    parts.append(_render_pgbouncer(st["pgbouncer"]))
    return Group(*parts)


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{tables.duration(seconds)} ago"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{float(x):.1f}"


def _render_replication(rep: dict[str, Any]) -> RenderableType:
    if rep.get("standby"):
        s = rep["standby"]
        lag = tables.duration(s.get("replay_lag_seconds"))
        return Text(f"Replication: standby, replay lag {lag}"
                    f" ({tables.size(s.get('replay_lag_bytes'))}), "
                    f"{'streaming' if s.get('streaming') else 'NOT streaming'}")
    return tables.table("Replicas", [
        ("replica", "replica", None), ("address", "client_addr", None), ("state", "state", None),
        ("sync", "sync_state", None), ("lag", "replay_lag_seconds", tables.duration),
        ("lag bytes", "replay_lag_bytes", tables.size),
    ], rep.get("replicas", []), empty="no replicas")


def _render_backup(bk: dict[str, Any] | None) -> RenderableType:
    if bk is None:
        return Text("Backups: no status files on this host (backup jobs not deployed yet)",
                    style="dim")
    ages = [f"{label} {_ago(bk.get(key))}" for label, key in (
        ("last backup", "any_backup_age_seconds"), ("full", "full_backup_age_seconds"),
        ("verify", "verify_age_seconds"), ("dump", "dump_age_seconds")) if key in bk]
    title = "Backups: " + (", ".join(ages) if ages else "no backup recorded yet")
    if bk.get("error"):
        title += f" ({bk['error']})"
    return tables.table(title, [
        ("job", "job", None), ("last run", "ok", _ok),
        ("finished", "finished_at", tables.timestamp),
        ("last success", "last_success_age_seconds", _ago), ("message", "message", tables.text),
    ], bk.get("jobs", []), empty="no job has run yet")


def _ok(x: Any) -> str:
    return "-" if x is None else ("ok" if x else "[red]FAILED[/red]")


def _render_pgbouncer(pb: dict[str, Any] | None) -> RenderableType:
    if pb is None:
        return Text("PgBouncer: not running on this host", style="dim")
    if "error" in pb:
        return Text(pb["error"], style="red")
    return tables.table("PgBouncer pools", [
        ("database", "database", None), ("user", "user", None),
        ("clients active", "clients_active", None), ("waiting", "clients_waiting", None),
        ("servers active", "servers_active", None), ("idle", "servers_idle", None),
        ("pool size", "pool_size", None), ("use", "use_percent", tables.percent),
        ("max wait", "max_wait_seconds", tables.duration),
    ], pb.get("pools", []), empty="no pools yet")


# --- HA mode: the cluster as Patroni sees it -----------------------------------------------------

def cluster_rows(view: dict[str, Any]) -> list[Row]:
    """One row per Patroni member: role, state, timeline, lag behind the leader (bytes)."""
    return [{"member": m.get("name"), "host": m.get("host"), "role": m.get("role"),
             "state": m.get("state"), "timeline": m.get("timeline"),
             "lag": "-" if m.get("role") == "leader" else m.get("lag", "?")}
            for m in view.get("members", [])]


def render_cluster(view: dict[str, Any] | None) -> RenderableType:
    if view is None:
        return Text("Patroni cluster: no member answers (GET /cluster)", style="red")
    syncs = [m.get("name") for m in view.get("members", []) if m.get("role") == "sync_standby"]
    title = (f"Patroni cluster (synchronous standby: {', '.join(map(str, syncs)) or 'none'})")
    return tables.table(title, [
        ("member", "member", None), ("host", "host", None), ("role", "role", None),
        ("state", "state", None), ("timeline", "timeline", None),
        ("lag (bytes)", "lag", None)], cluster_rows(view))
