"""The declarative table of what the exporter asks and how each answer becomes metrics.

Each PostgreSQL query lives in ``sql/exporter/<name>.sql``; its column aliases are the metric
names (counters keep their ``_total``) and the label names, as in query-exporter. PgBouncer's
admin console only answers SHOW commands, whose column names are fixed, so its entries map
columns to metrics explicitly (``source``: columns times a scale, summed).

A query runs as its own statement under statement_timeout; when it fails, only its metrics are
missing from that scrape and bgdb_exporter_query_errors_total{query="<name>"} goes up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["gauge", "counter"]
Target = Literal["postgres", "pgbouncer"]


@dataclass(frozen=True)
class MetricSpec:
    name: str  # for counters, with the _total suffix the exposition shows
    kind: Kind
    help: str
    # (column, scale) pairs summed into the value; empty = the column named like the metric.
    source: tuple[tuple[str, float], ...] = ()

    def columns(self) -> tuple[tuple[str, float], ...]:
        return self.source or ((self.name, 1.0),)

    @property
    def family_name(self) -> str:
        # client_python adds _total to counter families itself.
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name


@dataclass(frozen=True)
class QuerySpec:
    name: str
    target: Target
    # postgres: a file in the SQL directory; pgbouncer: the SHOW command itself.
    sql: str
    metrics: tuple[MetricSpec, ...]
    # Label names; "label=column" takes the value from another column.
    labels: tuple[str, ...] = ()
    # Rows whose column has this value are ignored (e.g. PgBouncer's own admin database).
    skip: tuple[tuple[str, str], ...] = field(default=())
    # Slow-changing figures (sizes): run at most every min_interval_seconds; the scrapes in
    # between serve the samples of the last successful run (0 = every scrape).
    min_interval_seconds: float = 0.0
    # Totals that another query's rows already carry (same SQL file): no statement of its own;
    # its samples come from the first row of that query in the same scrape (0 for every metric
    # when it returned no row), and it fails when that query fails.
    rows_from: str = ""
    # The statement returns its rows as one JSON array in a column named "rows" (SELECT
    # coalesce(json_agg(r), '[]') AS rows FROM (...) AS r). Debian's python3-psycopg is pure
    # Python and pays a few microseconds per value fetched; one json.loads is C. For the queries
    # with hundreds of rows (per-agent series, pg_stat_statements entries) that is most of the
    # exporter's CPU per scrape.
    json_rows: bool = False
    # Runs on a second connection while the main one runs the batch (the costliest query: the
    # two halves of the server's work overlap on a multi-core host). Any failure there and it
    # runs on the main connection after the batch, in the same scrape.
    parallel: bool = False

    def label_columns(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (lab.split("=", 1)[0], lab.split("=", 1)[-1]) for lab in self.labels
        )


def gauge(name: str, help_: str, *source: tuple[str, float]) -> MetricSpec:
    return MetricSpec(name, "gauge", help_, tuple(source))


def counter(name: str, help_: str, *source: tuple[str, float]) -> MetricSpec:
    if not name.endswith("_total"):
        raise ValueError(f"counter {name} must end in _total")
    return MetricSpec(name, "counter", help_, tuple(source))


US = 1e-6  # PgBouncer reports times in microseconds
# Sizes walk every file of the database (pg_database_size) and of every partition and index
# (pg_total_relation_size): tens of ms at 10 M heartbeats, more than the rest of a scrape. They
# grow over hours (capacity trends; disk-full alerts use node_filesystem_*), so a 5-minute-old
# figure is fresh enough and the cost, spread over 20 scrapes at a 15 s interval, stays small.
SIZES_TTL_SECONDS = 300.0

QUERIES: tuple[QuerySpec, ...] = (
    # ---- server and availability -------------------------------------------------------------
    QuerySpec("server", "postgres", "server.sql", (
        gauge("bgdb_pg_in_recovery", "1 if this server is a replica (in recovery), 0 if primary."),
        gauge("bgdb_pg_postmaster_start_time_seconds", "Start time of the postmaster, Unix time."),
        gauge("bgdb_pg_server_version_num", "server_version_num of PostgreSQL."),
        gauge("bgdb_pg_max_connections", "max_connections setting."),
        gauge("bgdb_pg_superuser_reserved_connections", "superuser_reserved_connections setting."),
        gauge("bgdb_pg_archive_mode", "1 if archive_mode is not off."),
    )),
    QuerySpec("connections", "postgres", "connections.sql", (
        gauge("bgdb_pg_connections", "Client backends by state (each holds a connection slot)."),
    ), labels=("state",)),
    QuerySpec("locks", "postgres", "locks.sql", (
        gauge("bgdb_pg_busy_backends", "Client backends not idle (active, in a transaction...)."),
        gauge("bgdb_pg_lock_waiting_backends", "Client backends waiting on a heavyweight lock."),
        gauge("bgdb_pg_lock_wait_ratio",
              "Share of busy client backends waiting on a lock (lock contention), 0..1."),
        gauge("bgdb_pg_blocked_queries", "Lock-waiting backends blocked by another backend."),
        gauge("bgdb_pg_blocking_backends", "Distinct backends blocking others."),
    )),
    QuerySpec("long_running", "postgres", "long_running.sql", (
        gauge("bgdb_pg_long_running_queries",
              "Client backends not idle whose query started more than long_query_seconds "
              "(default 300) ago."),
        gauge("bgdb_pg_longest_query_seconds", "Age of the longest active query."),
        gauge("bgdb_pg_longest_transaction_seconds", "Age of the oldest open transaction."),
        gauge("bgdb_pg_idle_in_transaction", "Client backends idle in transaction."),
    )),
    QuerySpec("databases", "postgres", "databases.sql", (
        counter("bgdb_pg_xact_commit_total", "Transactions committed (TPS: rate())."),
        counter("bgdb_pg_xact_rollback_total", "Transactions rolled back."),
        counter("bgdb_pg_deadlocks_total", "Deadlocks detected."),
        counter("bgdb_pg_blocks_hit_total", "Buffer cache hits."),
        counter("bgdb_pg_blocks_read_total", "Blocks read from disk (or the OS cache)."),
        counter("bgdb_pg_temp_bytes_total", "Bytes written to temporary files."),
        counter("bgdb_pg_conflicts_total", "Queries cancelled by recovery conflicts (replicas)."),
        gauge("bgdb_pg_database_backends", "Backends connected to the database."),
        gauge("bgdb_pg_cache_hit_ratio",
              "blks_hit / (blks_hit + blks_read) since the statistics reset (rate-based: the "
              "bgdb:pg_cache_hit:ratio_rate5m recording rule)."),
    ), labels=("datname",)),
    QuerySpec("database_sizes", "postgres", "database_sizes.sql", (
        gauge("bgdb_pg_database_size_bytes",
              "Database size on disk (measured at most every 300 s: sizes change slowly)."),
    ), labels=("datname",), min_interval_seconds=SIZES_TTL_SECONDS),
    QuerySpec("dead_tuples", "postgres", "dead_tuples.sql", (
        gauge("bgdb_pg_table_dead_tuples", "Dead tuples (top_tables tables with the most)."),
        gauge("bgdb_pg_table_live_tuples", "Live tuples of the same tables."),
        gauge("bgdb_pg_table_dead_tuple_ratio", "n_dead / (n_live + n_dead), 0..1."),
        gauge("bgdb_pg_table_last_vacuum_timestamp_seconds",
              "Last vacuum or autovacuum of the table, Unix time."),
    ), labels=("schema", "table")),
    QuerySpec("table_sizes", "postgres", "table_sizes.sql", (
        gauge("bgdb_pg_table_size_bytes",
              "Total size (heap, indexes, TOAST) of the top_tables largest tables; a "
              "partitioned table counts all its partitions (measured at most every 300 s)."),
    ), labels=("schema", "table"), min_interval_seconds=SIZES_TTL_SECONDS),
    QuerySpec("archiver", "postgres", "archiver.sql", (
        counter("bgdb_pg_archiver_archived_total", "WAL files archived."),
        counter("bgdb_pg_archiver_failed_total", "Failed attempts to archive a WAL file."),
        gauge("bgdb_pg_archiver_last_archived_timestamp_seconds", "Last archived, Unix time."),
        gauge("bgdb_pg_archiver_last_archive_age_seconds", "Seconds since the last archive."),
        gauge("bgdb_pg_archiver_last_failed_timestamp_seconds", "Last failure, Unix time."),
        gauge("bgdb_pg_archiver_ready_wal_files", "Completed WAL files waiting to be archived."),
    )),
    QuerySpec("replica", "postgres", "replica.sql", (
        gauge("bgdb_pg_replica_lag_seconds",
              "Replica only: age of the last replayed transaction, 0 when all received WAL is "
              "replayed."),
        gauge("bgdb_pg_replica_replay_lag_bytes", "Replica only: WAL received but not replayed."),
        gauge("bgdb_pg_replica_streaming", "Replica only: 1 if the WAL receiver is streaming."),
    )),
    QuerySpec("replication", "postgres", "replication.sql", (
        gauge("bgdb_pg_replication_streaming", "1 if the standby is in streaming state."),
        gauge("bgdb_pg_replication_sync", "1 if commits here wait for the standby (synchronous)."),
        gauge("bgdb_pg_replication_lag_bytes", "WAL written here but not replayed by the standby."),
        gauge("bgdb_pg_replication_replay_lag_seconds", "replay_lag reported for the standby."),
    ), labels=("replica",)),
    QuerySpec("slots", "postgres", "slots.sql", (
        gauge("bgdb_pg_replication_slot_active", "1 if a consumer is connected to the slot."),
        gauge("bgdb_pg_replication_slot_retained_bytes", "WAL kept for the slot (restart_lsn on)."),
        gauge("bgdb_pg_replication_slot_safe_wal_size_bytes",
              "WAL that may still be written before the slot is lost (max_slot_wal_keep_size)."),
    ), labels=("slot", "type")),
    # ---- agents -------------------------------------------------------------------------------
    # On the parallel connection with the per-agent search, the other reader of `agents`: every
    # heartbeat updates the agents table, so autovacuum vacuums and analyzes it about every
    # minute, and each time every cached plan that reads it is made again. Out of the batch, the
    # batch's plan (which reads every partition of the insert-only tables) is not among them.
    QuerySpec("agents_by_state", "postgres", "agents_by_state.sql", (
        gauge("bgdb_agents", "Agents by state."),
    ), labels=("state",), parallel=True),
    QuerySpec("agent_heartbeat", "postgres", "agent_heartbeat.sql", (
        gauge("bgdb_agent_last_heartbeat_age_seconds",
              "Seconds since the agent's last heartbeat (at most max_agents agents, most overdue "
              "first; stopped agents left out)."),
        gauge("bgdb_agent_missed_heartbeats",
              "Consecutive heartbeats missed: floor(age / heartbeat_interval_seconds)."),
        gauge("bgdb_agent_error_count", "error_count of the agent's latest heartbeat (last day)."),
        gauge("bgdb_agent_uptime_seconds", "Seconds since the agent's started_at."),
    ), labels=("agent_id",), json_rows=True, parallel=True),
    QuerySpec("agent_summary", "postgres", "agent_heartbeat.sql", (
        gauge("bgdb_agents_expected_heartbeat", "Agents not stopped (expected to beat)."),
        gauge("bgdb_agents_labelled", "Agents that have per-agent series (capped by max_agents)."),
        gauge("bgdb_agents_missed_heartbeats_max",
              "Largest consecutive missed heartbeats over all agents not stopped."),
    ), rows_from="agent_heartbeat"),
    QuerySpec("agent_activity", "postgres", "agent_activity.sql", (
        gauge("bgdb_agent_heartbeats_5m", "Heartbeats received in the last 5 minutes."),
        gauge("bgdb_agent_heartbeat_errors_5m", "Sum of error_count of those heartbeats."),
        gauge("bgdb_operations_5m", "Operations (system_events rows) in the last 5 minutes."),
        gauge("bgdb_operation_errors_5m", "Of those, severity ERROR or CRITICAL."),
        gauge("bgdb_operation_error_ratio",
              "Operation error rate: ERROR/CRITICAL system_events / all system_events over the "
              "last 5 minutes, 0..1 (0 when none)."),
    )),
    QuerySpec("events", "postgres", "events.sql", (
        gauge("bgdb_system_events_5m", "system_events rows of the last 5 minutes."),
    ), labels=("severity", "event_type")),
    QuerySpec("queues", "postgres", "queues.sql", (
        gauge("bgdb_help_requests_pending", "Help requests with status pending."),
        gauge("bgdb_help_requests_oldest_pending_age_seconds",
              "Age of the oldest pending help request (0 when none)."),
        gauge("bgdb_agent_messages_pending",
              "Unprocessed agent messages (status 'sent', the seed's default, or 'pending')."),
        gauge("bgdb_agent_messages_oldest_pending_age_seconds",
              "Age of the oldest unprocessed agent message (0 when none)."),
    )),
    QuerySpec("llm", "postgres", "llm.sql", (
        gauge("bgdb_llm_calls_5m", "LLM calls recorded in the last 5 minutes (model 'unknown': "
              "calls recorded without a model)."),
        gauge("bgdb_llm_tokens_5m",
              "Tokens of those calls: tokens_used (the seed's column), else input + output."),
        gauge("bgdb_llm_input_tokens_5m", "Input tokens of those calls (0 when only tokens_used "
              "was recorded)."),
        gauge("bgdb_llm_output_tokens_5m", "Output tokens of those calls (0 when only "
              "tokens_used was recorded)."),
        gauge("bgdb_llm_cost_5m", "Cost of those calls, in the unit of llm_conversations.cost."),
    ), labels=("model",)),
    # ---- PgBouncer (admin console) -----------------------------------------------------------
    QuerySpec("pgbouncer_pools", "pgbouncer", "SHOW POOLS", (
        gauge("bgdb_pgbouncer_pool_client_active", "Clients linked to a server connection.",
              ("cl_active", 1.0)),
        gauge("bgdb_pgbouncer_pool_client_waiting", "Clients waiting for a server connection.",
              ("cl_waiting", 1.0)),
        gauge("bgdb_pgbouncer_pool_server_active", "Server connections linked to a client.",
              ("sv_active", 1.0)),
        gauge("bgdb_pgbouncer_pool_server_idle", "Server connections idle and ready.",
              ("sv_idle", 1.0)),
        gauge("bgdb_pgbouncer_pool_server_used", "Server connections idle, to be checked.",
              ("sv_used", 1.0)),
        gauge("bgdb_pgbouncer_pool_server_other", "Server connections testing or logging in.",
              ("sv_tested", 1.0), ("sv_login", 1.0)),
        gauge("bgdb_pgbouncer_pool_max_wait_seconds", "Wait of the oldest waiting client.",
              ("maxwait", 1.0), ("maxwait_us", US)),
    ), labels=("database", "user"), skip=(("database", "pgbouncer"),)),
    QuerySpec("pgbouncer_databases", "pgbouncer", "SHOW DATABASES", (
        gauge("bgdb_pgbouncer_database_pool_size", "Server connections allowed per user pool.",
              ("pool_size", 1.0)),
        gauge("bgdb_pgbouncer_database_reserve_pool_size", "Extra connections when clients wait.",
              ("reserve_pool", 1.0)),
        gauge("bgdb_pgbouncer_database_current_connections", "Server connections to the database.",
              ("current_connections", 1.0)),
        gauge("bgdb_pgbouncer_database_max_connections", "Per-database limit (0: none).",
              ("max_connections", 1.0)),
        gauge("bgdb_pgbouncer_database_paused", "1 if paused.", ("paused", 1.0)),
        gauge("bgdb_pgbouncer_database_disabled", "1 if disabled.", ("disabled", 1.0)),
    ), labels=("database=name",), skip=(("name", "pgbouncer"),)),
    QuerySpec("pgbouncer_stats", "pgbouncer", "SHOW STATS", (
        counter("bgdb_pgbouncer_queries_total", "Queries pooled.", ("total_query_count", 1.0)),
        counter("bgdb_pgbouncer_query_seconds_total",
                "Time spent by server connections running queries (mean query time = rate of "
                "this / rate of bgdb_pgbouncer_queries_total).", ("total_query_time", US)),
        counter("bgdb_pgbouncer_transactions_total", "Transactions pooled.",
                ("total_xact_count", 1.0)),
        counter("bgdb_pgbouncer_transaction_seconds_total", "Time spent in transactions.",
                ("total_xact_time", US)),
        counter("bgdb_pgbouncer_client_wait_seconds_total",
                "Time clients waited for a server connection.", ("total_wait_time", US)),
        counter("bgdb_pgbouncer_received_bytes_total", "Bytes received from clients.",
                ("total_received", 1.0)),
        counter("bgdb_pgbouncer_sent_bytes_total", "Bytes sent to clients.", ("total_sent", 1.0)),
    ), labels=("database",), skip=(("database", "pgbouncer"),)),
)

# The latency histogram's input (exporters/latency.py); handled apart from the table above. On
# the parallel connection: with the heartbeat search's rows reused between refreshes, that
# connection had only agents_by_state to run, and the batch (the scrape's long pole) was ~1 ms
# shorter without this part.
STATEMENTS_QUERY = QuerySpec("statements", "postgres", "statements.sql", (), json_rows=True,
                             parallel=True)


def check_table(queries: tuple[QuerySpec, ...] = QUERIES) -> None:
    """Names are unique and valid; raises ValueError. Run by the unit tests and at start-up."""
    import re

    valid = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    seen_q: set[str] = set()
    seen_m: set[str] = set()
    for q in queries:
        if q.name in seen_q:
            raise ValueError(f"query {q.name} twice")
        seen_q.add(q.name)
        for m in q.metrics:
            if not valid.match(m.name) or m.family_name in seen_m:
                raise ValueError(f"metric {m.name} of {q.name}: invalid or defined twice")
            if m.kind == "counter" and not m.name.endswith("_total"):
                raise ValueError(f"counter {m.name} must end in _total")
            seen_m.add(m.family_name)
        if q.rows_from and q.rows_from not in seen_q:
            raise ValueError(f"query {q.name}: rows_from {q.rows_from} must come before it")
        if q.parallel and (q.target != "postgres" or q.min_interval_seconds > 0 or q.rows_from):
            raise ValueError(f"query {q.name}: only an every-scrape PostgreSQL query can run "
                             "in parallel")
