"""The seed's SQL, extracted by hand into tests/fixtures/seed (see its README), read as the list
of statements to send."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "seed"


def statements(text: str) -> list[str]:
    """The statements of a fixture: each ends with `;` at the end of a line; whole-line `--`
    comments and blank lines between statements are dropped, the statement text is kept as
    written (trailing blanks of its lines and its `;` included)."""
    out: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(current))
            current = []
    if current:
        raise ValueError(f"statement without a final ';': {current[0].strip()!r}")
    return out


def fixture(relative: str) -> list[str]:
    """The statements of tests/fixtures/seed/<relative>."""
    return statements((FIXTURES / relative).read_text(encoding="utf-8"))


def fixtures(directory: str) -> dict[str, list[str]]:
    """file stem -> statements, for every .sql file of tests/fixtures/seed/<directory>, in
    name order."""
    return {p.stem: statements(p.read_text(encoding="utf-8"))
            for p in sorted((FIXTURES / directory).glob("*.sql"))}


# The seed's own arguments to its own statement (Connection Management).
SEED_METRIC_ARGS = ("performance_monitor", "cpu_usage", 25.5)
# The agent ids of inserts/01_agents.sql.
SEED_AGENTS = ("performance_monitor", "seed_agent_nulls", "help_agent", "seed_agent_minimal")


def insert_seed_rows(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Every insert fixture, table by table (a savepoint each); table -> 'ok' or the error."""
    outcome: dict[str, str] = {}
    for name, stmts in fixtures("inserts").items():
        table = name[3:]
        try:
            with conn.transaction():
                for stmt in stmts:
                    # RawCursor: the seed's $1 placeholders go to the server as written.
                    with psycopg.RawCursor(conn) as cur:
                        cur.execute(stmt, SEED_METRIC_ARGS if "$1" in stmt else None)
            outcome[table] = "ok"
        except psycopg.Error as exc:
            outcome[table] = f"{exc.sqlstate}: {str(exc).strip().splitlines()[0]}"
    return outcome


# What the seed's rows read back as: its explicit values (NULLs included) and its defaults.
READ_BACK: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "agents": (
        "SELECT agent_id, state, started_at IS NOT NULL, config, metadata, created_at IS NULL"
        " FROM agents WHERE agent_id IN ('seed_agent_nulls', 'help_agent') ORDER BY agent_id",
        [("help_agent", "running", True, {"model": "gpt-4", "max_tokens": 2048},
          {"version": "1.2.0", "host": "worker-3"}, False),
         ("seed_agent_nulls", "stopped", False, None, None, True)]),
    "agent_heartbeats": (
        "SELECT agent_id, state, error_count, metrics -> 'cpu_usage', created_at IS NOT NULL"
        " FROM agent_heartbeats WHERE agent_id IN ('performance_monitor', 'seed_agent_nulls')"
        " ORDER BY agent_id, error_count NULLS LAST, created_at NULLS LAST",
        [("performance_monitor", "running", 0, 25.5, True),
         ("performance_monitor", "running", 2, 75, True),
         ("seed_agent_nulls", None, 0, None, True),
         ("seed_agent_nulls", None, None, None, False)]),
    "performance_metrics": (
        "SELECT agent_id, metric_name, value, unit, metadata FROM performance_metrics"
        " WHERE agent_id IN ('performance_monitor', 'help_agent') ORDER BY metric_name",
        [("performance_monitor", "cpu_usage", Decimal("25.5"), None, {}),  # our default
         ("help_agent", "queue_depth", None, None, None),
         ("performance_monitor", "response_time", Decimal("123.456789012345678901"), "ms",
          {"endpoint": "/health"})]),
    "system_state": (
        "SELECT key, value, updated_at IS NOT NULL, updated_by FROM system_state"
        " WHERE key IN ('coordinator', 'maintenance_mode', 'last_cleanup') ORDER BY key",
        [("coordinator", {"leader": "performance_monitor"}, True, "performance_monitor"),
         ("last_cleanup", {}, True, None),
         ("maintenance_mode", None, False, None)]),
    "system_events": (
        "SELECT event_type, agent_id, severity, event_data FROM system_events"
        " WHERE event_type IN ('agent_started', 'task_failed', 'system_notice',"
        " 'heartbeat_missed') AND timestamp > now() - interval '1 minute' ORDER BY event_type",
        [("agent_started", "performance_monitor", "INFO", {"pid": 4242}),
         ("heartbeat_missed", None, "INFO", {}),
         ("system_notice", None, None, None),
         ("task_failed", "unregistered_agent", "ERROR", {"error": "timeout"})]),
    "help_requests": (
        "SELECT request_id, user_id, status, priority, context FROM help_requests"
        " WHERE request_id LIKE 'req-00_' ORDER BY request_id",
        [("req-001", "user-42", "pending", "high", {"agent_id": "performance_monitor"}),
         ("req-002", "user-43", "pending", "medium", {}),
         ("req-003", "user-44", None, "low", None),
         ("req-004", "user-45", "pending", None, {})]),
    "help_responses": (
        "SELECT response_id, request_id, confidence_score, sources, generated_at IS NOT NULL,"
        " agent_id FROM help_responses WHERE response_id LIKE 'resp-00_' ORDER BY response_id",
        [("resp-001", "req-001", Decimal("0.92"), ["docs/agents.md", "runbook#restart"], True,
          "help_agent"),
         ("resp-002", "req-001", None, None, True, None),
         ("resp-003", "req-002", None, None, False, "external_llm")]),
    "agent_communications": (
        "SELECT from_agent, to_agent, message_type, content, status, timestamp IS NOT NULL"
        " FROM agent_communications WHERE message_type IN ('task_request', 'task_ack', 'shutdown')"
        " AND (from_agent, to_agent) IN (('performance_monitor', 'scheduler'),"
        " ('scheduler', 'performance_monitor'), ('scheduler', 'help_agent'))"
        " ORDER BY message_type",
        [("scheduler", "help_agent", "shutdown", {}, "delivered", True),
         ("scheduler", "performance_monitor", "task_ack", None, None, False),
         ("performance_monitor", "scheduler", "task_request", {"task": "collect_metrics"}, "sent",
          True)]),
    "llm_conversations": (
        "SELECT conversation_id, agent_id, model, tokens_used, cost, timestamp IS NOT NULL,"
        " metadata FROM llm_conversations WHERE conversation_id LIKE 'conv-00_'"
        " ORDER BY conversation_id",
        [("conv-001", "help_agent", "gpt-4", 1234, Decimal("0.0000012345678"), True,
          {"temperature": 0.2}),
         ("conv-002", None, None, None, None, True, None),
         ("conv-003", "unregistered_agent", None, None, None, False, None)]),
}
