"""`bgdb troubleshoot`: the seed's "Troubleshooting Guide", run for you on each database host.

Each section reads facts (sql/monitoring/*.sql, PgBouncer's console, `df`), flags what passes
its threshold and says what to do about it. The checks themselves (`check_*`) are pure functions
of plain rows, so the thresholds are tested without a database. The command exits 1 when any
section is flagged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from bgdb import monitoring, tables
from bgdb.monitoring import Disk, Row
from bgdb.status import pool_use
from bgdb.targets import OperatorError, reach, role_of
from deploy.hostdata import InventoryHost


@dataclass(frozen=True)
class Thresholds:
    connection_use_percent: float = 80.0  # client connections of the usable max_connections
    long_query_seconds: float = 600.0  # the seed's "over 10 minutes"
    slow_statement_ms: float = 1000.0  # mean time; the seed's log_min_duration_statement
    dead_tuple_ratio: float = 0.2  # dead / (live + dead), autovacuum's default scale factor
    dead_tuple_min: int = 10000  # ignore small tables: a ratio of a few rows means nothing
    disk_free_percent: float = 15.0  # free space left on the data volume
    pgbouncer_waiting: int = 0  # clients queued for a server connection


@dataclass
class Section:
    key: str
    title: str
    flagged: bool = False
    summary: str = ""
    advice: str = ""  # what to do; only shown when flagged
    rows: list[Row] = field(default_factory=list)  # what the section looked at
    flagged_rows: list[Row] = field(default_factory=list)  # the rows over the threshold
    error: str | None = None  # the facts could not be read


# --- checks (pure) -----------------------------------------------------------------------------

def check_connections(states: Sequence[Row], server: Row, th: Thresholds) -> Section:
    """Client connections by state against the slots clients can use (max_connections minus
    the superuser reserve)."""
    by_state: Counter[str] = Counter()
    for r in states:
        by_state[str(r["state"])] += int(r["connections"])
    total = sum(by_state.values())
    usable = int(server.get("max_connections", 0)) - int(
        server.get("superuser_reserved_connections", 0))
    use = 100.0 * total / usable if usable > 0 else 0.0
    idle_tx = by_state.get("idle in transaction", 0) + by_state.get(
        "idle in transaction (aborted)", 0)
    sec = Section("connections", "Connection pool exhaustion",
                  rows=[{"state": s, "connections": n} for s, n in by_state.most_common()])
    sec.summary = (f"{total} client connections of {usable} usable ({use:.0f}%): "
                   + ", ".join(f"{n} {s}" for s, n in by_state.most_common()))
    if use >= th.connection_use_percent:
        sec.flagged = True
        sec.flagged_rows = sec.rows
        sec.advice = (
            "Clients are close to max_connections. Point the agents at PgBouncer (port 6432) "
            "instead of PostgreSQL, lower the agents' pool size (POSTGRESQL_POOL_SIZE), and end "
            "idle sessions"
            + (f" ({idle_tx} idle in transaction hold a slot each: fix the client or lower "
               "idle_in_transaction_session_timeout)" if idle_tx else "")
            + "; raise max_connections (postgres_overrides) only with RAM to spare.")
    return sec


def check_pgbouncer(pools: Sequence[Row], th: Thresholds) -> Section:
    waiting = sum(int(p.get("clients_waiting") or 0) for p in pools)
    longest = max((float(p.get("max_wait_seconds") or 0) for p in pools), default=0.0)
    sec = Section("pgbouncer", "PgBouncer clients waiting", rows=list(pools))
    sec.summary = (f"{waiting} client(s) waiting for a server connection, longest "
                   f"{tables.duration(longest)}")
    if waiting > th.pgbouncer_waiting:
        sec.flagged = True
        sec.flagged_rows = [p for p in pools if int(p.get("clients_waiting") or 0) > 0]
        sec.advice = (
            "Every server connection of the pool is busy. Look for long transactions holding "
            "them (long-running queries below); if the load is real, raise "
            "pgbouncer_default_pool_size (the deploy checks it still fits in max_connections).")
    return sec


def query_age(row: Row) -> float:
    """How long a session has been at it: its transaction when idle inside one (it holds locks
    and a snapshot), else its current query."""
    key = ("transaction_seconds" if str(row.get("state", "")).startswith("idle in transaction")
           else "duration_seconds")
    value = row.get(key)
    return float(value) if value is not None else 0.0


def check_long_queries(running: Sequence[Row], th: Thresholds) -> Section:
    long = [dict(r, age_seconds=query_age(r)) for r in running
            if query_age(r) >= th.long_query_seconds]
    over = tables.duration(th.long_query_seconds)
    sec = Section("long_queries", f"Long-running queries (over {over})", rows=list(running),
                  flagged_rows=long)
    sec.summary = f"{len(long)} of {len(running)} running queries over the threshold"
    if long:
        sec.flagged = True
        sec.advice = (
            "Find the client by user, application and address. Cancel the query with "
            "SELECT pg_cancel_backend(<pid>), or end the session with "
            "SELECT pg_terminate_backend(<pid>). Long transactions also keep VACUUM from "
            "removing dead rows (see table bloat).")
    return sec


def check_slow_statements(statements: Sequence[Row], th: Thresholds) -> Section:
    slow = [s for s in statements if float(s.get("mean_ms") or 0) >= th.slow_statement_ms]
    sec = Section("slow_statements", "Slowest statements (pg_stat_statements, by mean time)",
                  rows=list(statements), flagged_rows=slow)
    top = statements[0] if statements else None
    sec.summary = (f"{len(slow)} statement(s) with a mean over {tables.ms(th.slow_statement_ms)}"
                   + (f"; slowest mean {tables.ms(top.get('mean_ms'))}" if top else ""))
    if slow:
        sec.flagged = True
        sec.advice = (
            "Run EXPLAIN (ANALYZE, BUFFERS) on the statement with typical parameters; look for "
            "sequential scans of large tables (a missing index) or a range that does not prune "
            "partitions. After a fix, SELECT pg_stat_statements_reset() starts the figures over.")
    return sec


def check_bloat(tables_: Sequence[Row], th: Thresholds) -> Section:
    bloated = [t for t in tables_
               if (t.get("dead_tuple_ratio") or 0) >= th.dead_tuple_ratio
               and int(t.get("dead_tuples") or 0) >= th.dead_tuple_min]
    sec = Section("bloat", "Table bloat (dead-tuple ratio)", rows=list(tables_),
                  flagged_rows=bloated)
    sec.summary = (f"{len(bloated)} table(s) with over {th.dead_tuple_ratio:.0%} dead tuples "
                   f"(and at least {th.dead_tuple_min} of them)")
    if bloated:
        sec.flagged = True
        sec.advice = (
            "VACUUM (ANALYZE) the table now, or `bgdb maintenance run weekly`. If dead tuples "
            "come back, autovacuum cannot keep up or is held back by long transactions: check "
            "long-running queries and idle-in-transaction sessions, then lower the table's "
            "autovacuum_vacuum_scale_factor.")
    return sec


def check_sizes(databases: Sequence[Row], largest: Sequence[Row]) -> Section:
    """Informational: where the space goes (the disk section flags a full volume)."""
    rows = [dict(d, kind="database") for d in databases] + [
        dict(t, kind="table") for t in largest]
    summary = ", ".join(f"{d['database_name']} {tables.size(d.get('size_bytes'))}"
                        for d in databases)
    return Section("sizes", "Database and largest-table sizes", summary=summary, rows=rows)


def check_disk(disk: Disk, th: Thresholds) -> Section:
    sec = Section("disk", "Disk free on the data volume",
                  rows=[dict(asdict(disk), free_percent=disk.free_percent)])
    sec.summary = (f"{tables.size(disk.free_bytes)} free of {tables.size(disk.size_bytes)} "
                   f"({disk.free_percent:.1f}%) on {disk.mount} ({disk.path})")
    if disk.free_percent < th.disk_free_percent:
        sec.flagged = True
        sec.flagged_rows = sec.rows
        sec.advice = (
            "Free space before PostgreSQL stops: check that WAL archiving works "
            "(pg_stat_archiver; failed archiving keeps WAL), drop expired partitions "
            "(`bgdb maintenance run weekly`), remove old dumps, or grow the volume.")
    return sec


# --- collecting ----------------------------------------------------------------------------

def _section(key: str, title: str, build: Callable[[], Section]) -> Section:
    try:
        return build()
    except (monitoring.QueryError, ValueError) as exc:
        return Section(key, title, error=str(exc))


def collect_host(inv: InventoryHost, th: Thresholds) -> dict[str, Any]:
    target = reach(inv)
    sections: list[Section] = []
    server = _section("server", "Server", lambda: Section(
        "server", "Server", rows=monitoring.rows(target, "server_info")))
    info = server.rows[0] if server.rows else {}
    if server.error:
        sections.append(server)
    sections.append(_section("connections", "Connection pool exhaustion", lambda: (
        check_connections(monitoring.rows(target, "connection_states"), info, th))))
    if monitoring.service_active(target, monitoring.PGBOUNCER_UNIT):
        sections.append(_pgbouncer(target, th))
    sections.append(_section("long_queries", "Long-running queries", lambda: (
        check_long_queries(monitoring.rows(
            target, "long_running_queries", settings={"bgdb.long_query_seconds": "0"}), th))))
    version = int(info.get("server_version_num") or 150000)
    sections.append(_section("slow_statements", "Slowest statements", lambda: (
        check_slow_statements(monitoring.rows(target, monitoring.statements_file(version)), th))))
    sections.append(_section("bloat", "Table bloat", lambda: (
        check_bloat(monitoring.rows(target, "table_bloat"), th))))
    sections.append(_section("sizes", "Database and largest-table sizes", lambda: (
        check_sizes(monitoring.rows(target, "database_sizes"),
                    monitoring.rows(target, "largest_tables")))))
    data_dir = str(info.get("data_directory") or target.pg.data_dir)
    sections.append(_section("disk", "Disk free on the data volume", lambda: (
        check_disk(monitoring.disk(target, data_dir), th))))
    return {"host": inv.name, "address": inv.address, "role": role_of(inv),
            "flagged": any(s.flagged for s in sections),
            "sections": [asdict(s) for s in sections]}


def _pgbouncer(target: Any, th: Thresholds) -> Section:
    try:
        shown = monitoring.pgbouncer_console(target)
    except Exception as exc:  # noqa: BLE001 - psycopg.Error, SecretError, OSError alike
        return Section("pgbouncer", "PgBouncer clients waiting",
                       error=f"PgBouncer console: {monitoring.last_line(str(exc))}")
    return check_pgbouncer(pool_use(shown["SHOW POOLS"], shown["SHOW DATABASES"]), th)


def collect(hosts: Sequence[InventoryHost], th: Thresholds
            ) -> tuple[list[dict[str, Any]], list[str]]:
    results, problems = [], []
    for inv in hosts:
        try:
            results.append(collect_host(inv, th))
        except OperatorError as exc:
            problems.append(str(exc))
    return results, problems


# --- drawing -----------------------------------------------------------------------------------

_COLUMNS: dict[str, list[tables.Column]] = {
    "connections": [("state", "state", None), ("connections", "connections", None)],
    "disk": [("mount", "mount", None), ("free", "free_bytes", tables.size),
             ("size", "size_bytes", tables.size), ("free %", "free_percent", tables.percent)],
    "pgbouncer": [("database", "database", None), ("user", "user", None),
                  ("waiting", "clients_waiting", None),
                  ("max wait", "max_wait_seconds", tables.duration),
                  ("servers active", "servers_active", None), ("pool size", "pool_size", None)],
    "long_queries": [("pid", "pid", None), ("user", "user_name", None),
                     ("database", "database_name", None),
                     ("application", "application_name", None),
                     ("client", "client_addr", None), ("state", "state", None),
                     ("for", "age_seconds", tables.duration), ("query", "query", tables.text)],
    "slow_statements": [("user", "user_name", None), ("calls", "calls", None),
                        ("mean", "mean_ms", tables.ms), ("max", "max_ms", tables.ms),
                        ("total", "total_ms", tables.ms), ("query", "query", tables.text)],
    "bloat": [("table", "table_name", None), ("live", "live_tuples", None),
              ("dead", "dead_tuples", None), ("dead ratio", "dead_tuple_ratio", tables.ratio),
              ("size", "total_bytes", tables.size),
              ("last autovacuum", "last_autovacuum", tables.timestamp)],
    "sizes": [("kind", "kind", None), ("name", "name", None), ("size", "size", tables.size)],
}


def _shown_rows(sec: dict[str, Any]) -> list[Row]:
    """What a person sees: the top of the slowest statements and of the sizes, otherwise only
    what was flagged (the rest is in --json)."""
    if sec["key"] == "sizes":
        return [{"kind": r["kind"], "name": r.get("database_name") or r.get("table_name"),
                 "size": r.get("size_bytes", r.get("total_bytes"))} for r in sec["rows"][:15]]
    if sec["key"] == "slow_statements":
        return sec["rows"][:5]
    return sec["flagged_rows"][:20]


def render_host(result: dict[str, Any]) -> RenderableType:
    verdict = "[red]problems found[/red]" if result["flagged"] else "[green]nothing flagged[/green]"
    parts: list[RenderableType] = [Text.from_markup(
        f"\n[bold underline]{result['host']} ({result['address']}) — {result['role']}"
        f"[/bold underline]: {verdict}")]
    for sec in result["sections"]:
        if sec["error"]:
            parts.append(Text(f"? {sec['title']}: could not check: {sec['error']}",
                              style="yellow"))
            continue
        mark = "[red]✗[/red]" if sec["flagged"] else "[green]✓[/green]"
        parts.append(Text.from_markup(f"\n{mark} [bold]{sec['title']}[/bold]: ")
                     + Text(sec["summary"]))
        shown = _shown_rows(sec)
        if shown and sec["key"] in _COLUMNS:
            parts.append(tables.table("", _COLUMNS[sec["key"]], shown))
        if sec["flagged"]:
            parts.append(Text("  → " + sec["advice"], style="yellow"))
    return Group(*parts)
