"""Migration 0004 on a database built by 0001-0003 (the previous schema) that holds data in every
table: no row lost, values converted as the schema spec says, and the seed's statements work
afterwards."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from bgdb import migrate
from tests.integration.bgdb.helpers import APP, apply, as_role, copy_sql
from tests.seed_sql import READ_BACK, fixtures, insert_seed_rows

TABLES = ("agents", "agent_heartbeats", "performance_metrics", "system_state", "system_events",
          "help_requests", "help_responses", "agent_communications", "llm_conversations")

# The previous schema's column names, as the pre-0004 client wrote them.
LEGACY_ROWS = [
    "INSERT INTO agents (agent_id, name, type, state, config) VALUES"
    " ('old-a', 'Old A', 'worker', 'running', '{\"q\": 1}'),"
    " ('old-b', 'Old B', 'worker', 'stopped', '{}')",
    "INSERT INTO agent_heartbeats (agent_id, state, metrics, error_count) VALUES"
    " ('old-a', 'running', '{\"cpu_percent\": 30, \"memory_mb\": 100}', 1),"
    " ('old-a', 'running', '{\"cpu_percent\": 50}', 0),"
    " ('old-b', 'running', '{\"cpu_percent\": \"n/a\"}', 0)",
    "INSERT INTO agent_heartbeats (agent_id, timestamp)"
    " VALUES ('old-a', now() - interval '3 days')",
    "INSERT INTO performance_metrics (agent_id, metric_name, value, unit, tags) VALUES"
    " ('old-a', 'latency', 0.1, 's', '{\"route\": \"/x\"}'),"
    " ('old-a', 'big', 1.5e300, NULL, '{}'),"
    " ('old-b', 'nan', 'NaN', NULL, '{}')",
    "INSERT INTO system_state (key, value) VALUES ('leader', '\"old-a\"')",
    "INSERT INTO system_events (event_type, severity, agent_id, event_data) VALUES"
    " ('old_task_failed', 'ERROR', 'old-a', '{\"task\": 1}'), ('boot', 'INFO', NULL, '{}')",
    "INSERT INTO help_requests (id, requesting_agent_id, request_type, context, priority) VALUES"
    " (1, 'old-a', 'review', '{\"pr\": 7}', 9), (2, NULL, 'ask', '{}', 2),"
    " (3, 'old-b', 'triage', '{}', 5), (4, 'old-b', 'edge', '{}', 7),"
    " (5, 'old-a', 'edge', '{}', 3)",
    "INSERT INTO help_responses (request_id, responding_agent_id, response) VALUES"
    " (1, 'old-b', '{\"answer\": 42}'), (1, NULL, '{\"answer\": 43}'), (3, 'old-a', '{}')",
    "INSERT INTO agent_communications (sender_id, recipient_id, message_type, content, status)"
    " VALUES ('old-a', 'old-b', 'ping', '{}', 'pending'),"
    " ('old-a', NULL, 'broadcast', '{\"all\": true}', 'pending'),"
    " ('old-b', 'old-a', 'pong', '{}', 'processed')",
    "INSERT INTO llm_conversations (agent_id, model, prompt, response, tokens_input,"
    " tokens_output, cost, duration) VALUES ('old-a', 'm1', 'hi', 'hello', 10, 5, 0.001234, 0.5),"
    " (NULL, 'm2', NULL, NULL, 0, 0, 0, NULL)",
]

# After 0004, what the legacy rows read as.
CONVERTED: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "help_requests": (
        "SELECT id, request_id, user_id, content, priority, priority_rank FROM help_requests"
        " ORDER BY id",
        [(1, "legacy-1", "old-a", 'review: {"pr": 7}', "high", 3),
         (2, "legacy-2", "unknown", "ask: {}", "low", 1),
         (3, "legacy-3", "old-b", "triage: {}", "medium", 2),
         (4, "legacy-4", "old-b", "edge: {}", "high", 3),
         (5, "legacy-5", "old-a", "edge: {}", "low", 1)]),
    "help_responses": (
        "SELECT request_id, response_id = 'legacy-' || id, agent_id, content, response,"
        " generated_at IS NOT NULL FROM help_responses ORDER BY id",
        [("legacy-1", True, "old-b", '{"answer": 42}', {"answer": 42}, True),
         ("legacy-1", True, None, '{"answer": 43}', {"answer": 43}, True),
         ("legacy-3", True, "old-a", "{}", {}, True)]),
    "agent_communications": (
        "SELECT from_agent, to_agent, message_type, status, timestamp IS NOT NULL"
        " FROM agent_communications ORDER BY id",
        [("old-a", "old-b", "ping", "pending", True),
         ("old-a", None, "broadcast", "pending", True),
         ("old-b", "old-a", "pong", "processed", True)]),
    "llm_conversations": (
        "SELECT conversation_id = 'legacy-' || id, model, tokens_used, tokens_input,"
        " tokens_output, cost FROM llm_conversations ORDER BY id",
        [(True, "m1", 15, 10, 5, Decimal("0.001234")), (True, "m2", 0, 0, 0, Decimal("0"))]),
    "performance_metrics": (
        "SELECT metric_name, nullif(value, 'NaN'), value = 'NaN', metadata"
        " FROM performance_metrics ORDER BY metric_name",
        [("big", Decimal("1.5e300"), False, {}),
         ("latency", Decimal("0.1"), False, {"route": "/x"}),
         ("nan", None, True, {})]),
    "agent_heartbeats": (
        "SELECT agent_id, error_count, created_at FROM agent_heartbeats ORDER BY timestamp, id",
        [("old-a", 0, None), ("old-a", 1, None), ("old-a", 0, None), ("old-b", 0, None)]),
}


def counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                for t in TABLES}


def previous_schema(tmp_path: Path) -> Path:
    """sql/ as it was before 0004: the repository's files without 0004 and later."""
    directory = copy_sql(tmp_path)
    for path in directory.glob("*.sql"):
        if migrate.parse_name(path.name)[0] >= 4:
            path.unlink()
    return directory


def test_0004_keeps_every_row_converts_and_takes_the_seeds_statements(
        scratch_dsn: str, tmp_path: Path) -> None:
    before_files = previous_schema(tmp_path)
    assert [m.version for m in apply(scratch_dsn, before_files).applied] == [1, 2, 3]
    with as_role(scratch_dsn, APP) as conn:
        for stmt in LEGACY_ROWS:
            conn.execute(stmt)
    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        conn.execute("SELECT setval(pg_get_serial_sequence('help_requests', 'id'), 5)")
        conn.execute("REFRESH MATERIALIZED VIEW agent_health_summary")
    before = counts(scratch_dsn)
    assert all(before.values()), before

    result = apply(scratch_dsn)
    assert [m.filename for m in result.applied][:1] == ["0004_seed_schema.sql"]  # then later ones
    assert counts(scratch_dsn) == before

    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        got = {t: conn.execute(q).fetchall() for t, (q, _) in CONVERTED.items()}
        # The recreated view, refreshed as the daily job does, reads the legacy heartbeats'
        # cpu_percent when they carry no cpu_usage (non-numbers skipped).
        conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY agent_health_summary")
        view = conn.execute("SELECT agent_id, heartbeat_count, avg_cpu, name, total_errors"
                            " FROM agent_health_summary ORDER BY agent_id").fetchall()
    assert got == {t: expected for t, (_, expected) in CONVERTED.items()}
    assert view == [("old-a", 2, Decimal(40), "Old A", 1), ("old-b", 1, None, "Old B", 0)]

    # Every seed statement works on the upgraded database, as the application role.
    with as_role(scratch_dsn, APP) as conn, conn.transaction(force_rollback=True):
        assert insert_seed_rows(conn) == {name[3:]: "ok" for name in fixtures("inserts")}
        read = {t: conn.execute(q).fetchall() for t, (q, _) in READ_BACK.items()}
        ran = {name: [len(conn.execute(s).fetchall()) for s in stmts]
               for name, stmts in fixtures("monitoring").items()}
    assert read == {t: expected for t, (_, expected) in READ_BACK.items()}
    assert all(n > 0 for counts_ in ran.values() for n in counts_), ran
    # And the legacy help request can still be answered the seed's way.
    with as_role(scratch_dsn, APP) as conn:
        conn.execute("INSERT INTO help_responses (request_id, response_id, content)"
                     " VALUES ('legacy-2', 'resp-legacy-2', 'answered after the upgrade')")
        conn.execute("DELETE FROM help_requests WHERE request_id = 'legacy-1'")
        left = conn.execute("SELECT count(*) FROM help_responses WHERE request_id = 'legacy-1'")
        assert left.fetchone() == (0,)  # ON DELETE CASCADE through the text key
