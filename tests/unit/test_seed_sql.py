"""Splitting the seed's fixture files into statements."""

from __future__ import annotations

import pytest

from tests.seed_sql import fixture, fixtures, statements


def test_statements_keep_their_text_and_drop_comment_lines() -> None:
    text = ("-- Check active connections\nSELECT count(*) FROM pg_stat_activity;\n\n"
            "-- second\nSELECT pid, state FROM pg_stat_activity \nWHERE state != 'idle';\n")
    assert statements(text) == ["SELECT count(*) FROM pg_stat_activity;",
                                "SELECT pid, state FROM pg_stat_activity \nWHERE state != 'idle';"]


def test_a_comment_inside_a_statement_stays() -> None:
    assert statements("SELECT 1\n-- why\nFROM t;") == ["SELECT 1\n-- why\nFROM t;"]


def test_unterminated_statement_is_an_error() -> None:
    with pytest.raises(ValueError, match="without a final ';': 'SELECT 1'"):
        statements("SELECT 1\n")


def test_every_table_has_an_insert_fixture() -> None:
    inserts = fixtures("inserts")
    assert [name[3:] for name in inserts] == [
        "agents", "agent_heartbeats", "performance_metrics", "system_state", "system_events",
        "help_requests", "help_responses", "agent_communications", "llm_conversations"]
    for name, stmts in inserts.items():
        table = name[3:]
        assert stmts and all(s.startswith(f"INSERT INTO {table} (") for s in stmts), name
    assert fixture("inserts/01_agents.sql")[0] == (
        "INSERT INTO agents (agent_id, state, started_at) VALUES ('performance_monitor', "
        "'running', NOW());")
