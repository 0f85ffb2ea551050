"""The seed's agent flow on a real PostgreSQL: an agent written like the seed's example
registers, heartbeats, writes metrics and shuts down (in process, and as a process stopped by
SIGTERM); the rest of the agent API; $n queries and the adapter's fetch helpers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from background_agents.agent_api import AgentClient
from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter
from background_agents.example_agent import ExampleAgent
from background_agents.sqltext import SqlTextError
from tests.integration.background_agents.conftest import app_config, subprocess_env

REPO = Path(__file__).resolve().parents[3]


def one(dsn: str, query: str, *params: Any) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params or None).fetchone()
        assert row is not None
        return row[0] if len(row) == 1 else row


def test_seed_style_agent_registers_beats_writes_and_stops(agents_dsn: str) -> None:
    agent = ExampleAgent("seed-example", config={"queue": "default"},
                         db=PostgreSQLAdapter(app_config(agents_dsn, pool_size=2)),
                         heartbeat_interval=0.2, metrics_interval=0.3, cycle_interval=0.1)
    asyncio.run(agent.run(max_cycles=12))

    state, started, stopped, beat, config = one(
        agents_dsn, "SELECT state, started_at, stopped_at, last_heartbeat, config FROM agents"
                    " WHERE agent_id = 'seed-example'")
    assert state == "stopped"
    assert config == {"queue": "default"}
    assert started is not None and stopped is not None and started <= beat <= stopped
    # The seed's own INSERT, once per cycle; the buffered metric, once per cycle too.
    assert one(agents_dsn, "SELECT count(*) FROM performance_metrics WHERE agent_id ="
                           " 'seed-example' AND metric_name = 'cpu_usage'") == 12
    assert one(agents_dsn, "SELECT array_agg(value ORDER BY value) FROM performance_metrics"
                           " WHERE metric_name = 'cycle_count'") == [float(i) for i in range(1, 13)]
    # Registration beat + at least a few interval beats during ~1.2 s at 0.2 s.
    assert one(agents_dsn, "SELECT count(*) FROM agent_heartbeats"
                           " WHERE agent_id = 'seed-example'") >= 3
    assert one(agents_dsn, "SELECT array_agg(event_type ORDER BY timestamp) FROM system_events"
                           " WHERE event_type LIKE 'agent_%'") == ["agent_started", "agent_stopped"]


def test_sigterm_stops_the_agent_gracefully(agents_dsn: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "background_agents.example_agent", "--agent-id", "sigterm-agent",
         "--interval", "0.1", "--heartbeat-interval", "0.5"],
        cwd=REPO, env=subprocess_env(agents_dsn), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            n = one(agents_dsn, "SELECT count(*) FROM performance_metrics"
                                " WHERE agent_id = 'sigterm-agent'")
            if n >= 3:
                break
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        assert one(agents_dsn, "SELECT state FROM agents WHERE agent_id = 'sigterm-agent'") \
            == "running"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    state, stopped = one(agents_dsn, "SELECT state, stopped_at FROM agents"
                                     " WHERE agent_id = 'sigterm-agent'")
    assert state == "stopped" and stopped is not None, output


def test_agent_api_round_trip(agents_dsn: str) -> None:
    async def main() -> None:
        async with PostgreSQLAdapter(app_config(agents_dsn)) as db:
            a, b = AgentClient(db, "api-a", agent_type="planner"), AgentClient(db, "api-b")
            await a.register()
            await b.register()
            await a.heartbeat({"cpu_usage": 12.5})
            await b.heartbeat({"queue": 1})  # cpu_usage: the client's own measurement
            for i in range(250):
                a.record_metric("latency_ms", i, "ms", {"shard": i % 3})
            a.record_metric("latency_ms", None, "ms", {"shard": "down"})  # NULL, as the seed's
            assert await a.flush_metrics() == 251
            assert await a.flush_metrics() == 0
            await a.log_event("task_failed", {"task": 7}, severity="ERROR")
            sent = [await a.send_message("api-b", "task", {"n": i}) for i in range(5)]
            got = await b.receive_messages(limit=3)
            assert [m.id for m in got] == sent[:3]
            assert [m.content for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
            assert {(m.from_agent, m.to_agent) for m in got} == {("api-a", "api-b")}
            # A message written with the seed's own statement (status: the default 'sent').
            await db.execute_query("INSERT INTO agent_communications (from_agent, to_agent,"
                                   " message_type, content) VALUES ($1, $2, $3, $4)",
                                   "seed-x", "api-b", "task", {"n": 99})
            rest = await b.receive_messages(limit=10)
            assert [m.id for m in rest][:2] == sent[3:]
            assert [m.content for m in rest] == [{"n": 3}, {"n": 4}, {"n": 99}]
            assert await b.receive_messages() == []
            low = await a.request_help("tidy the logs", priority="low")
            req = await a.request_help("review", {"pr": 1}, priority="high")
            pending = await b.pending_help_requests()
            assert [(r["request_id"], r["priority"]) for r in pending] == [
                (req, "high"), (low, "low")]  # most urgent first, whatever the age
            assert (pending[0]["user_id"], pending[0]["content"]) == ("api-a", "review")
            await b.respond_to_help(req, "approved", confidence_score=0.75,
                                    sources=["https://example.invalid/pr/1"],
                                    response={"ok": True})
            [resp] = await a.help_responses(req)
            assert (resp["content"], resp["agent_id"], resp["response"]) == (
                "approved", "api-b", {"ok": True})
            assert (float(resp["confidence_score"]), resp["sources"]) == (
                0.75, ["https://example.invalid/pr/1"])
            assert [r["request_id"] for r in await b.pending_help_requests()] == [low]
            await a.record_llm_conversation("model-x", "hi", "hello", conversation_id="conv-7",
                                            tokens_input=3, tokens_output=5, cost=0.0012,
                                            duration=0.8, metadata={"temperature": 0})
            await a.set_state("busy")
            await a.shutdown()

    asyncio.run(main())
    assert one(agents_dsn, "SELECT count(*), count(value) FROM performance_metrics"
                           " WHERE metric_name = 'latency_ms'") == (251, 250)
    assert one(agents_dsn, "SELECT count(DISTINCT metadata) FROM performance_metrics") == 4
    assert one(agents_dsn, "SELECT state, error_count, metrics FROM agent_heartbeats"
                           " WHERE agent_id = 'api-a'") == ("running", 0, {"cpu_usage": 12.5})
    # The seed's query (metrics->'cpu_usage') reads what the client measured.
    cpu = one(agents_dsn, "SELECT metrics->'cpu_usage' FROM agent_heartbeats"
                          " WHERE agent_id = 'api-b'")
    assert isinstance(cpu, int | float) and cpu >= 0
    assert one(agents_dsn, "SELECT severity FROM system_events WHERE event_type = 'task_failed'") \
        == "ERROR"
    assert one(agents_dsn, "SELECT count(*) FILTER (WHERE status = 'processed'"
                           " AND processed_at IS NOT NULL) FROM agent_communications") == 6
    assert one(agents_dsn, "SELECT status, resolved_at IS NOT NULL FROM help_requests"
                           " WHERE content = 'review'") == ("resolved", True)
    assert one(agents_dsn, "SELECT conversation_id, model, tokens_used, tokens_input,"
                           " tokens_output, cost::text, duration, metadata"
                           " FROM llm_conversations") == (
        "conv-7", "model-x", 8, 3, 5, "0.0012", 0.8, {"temperature": 0})
    assert one(agents_dsn, "SELECT state FROM agents WHERE agent_id = 'api-a'") == "stopped"


def test_concurrent_receivers_never_get_the_same_message(agents_dsn: str) -> None:
    async def main() -> list[int]:
        async with PostgreSQLAdapter(app_config(agents_dsn, pool_size=8)) as db:
            sender = AgentClient(db, "sender")
            await sender.register()
            await AgentClient(db, "inbox").register()
            for _ in range(200):
                await sender.send_message("inbox", "job", {})
            # Eight workers of the same agent drain one inbox concurrently.
            workers = [AgentClient(db, "inbox") for _ in range(8)]

            async def drain(w: AgentClient) -> list[int]:
                ids: list[int] = []
                for _ in range(200):
                    batch = await w.receive_messages(limit=5)
                    if not batch:
                        break
                    ids += [m.id for m in batch]
                return ids

            results = await asyncio.gather(*(drain(w) for w in workers))
            return [i for r in results for i in r]

    ids = asyncio.run(main())
    assert len(ids) == 200 and len(set(ids)) == 200


def test_adapter_queries_and_helpers(agents_dsn: str) -> None:
    async def main() -> None:
        async with PostgreSQLAdapter(app_config(agents_dsn)) as db:
            assert await db.fetchval("SELECT current_user") == "bg_agents_user"
            assert await db.fetchrow("SELECT $1::int + $2 AS s, $3 AS t", 1, 2, "x") == {
                "s": 3, "t": "x"}
            await db.execute_query(
                "INSERT INTO agents (agent_id, name, type, config) VALUES ($1, $2, $3, $4)",
                "h1", "H1", "t", {"nested": {"k": [1, 2]}})
            assert await db.fetchval("SELECT config FROM agents WHERE agent_id = $1", "h1") == {
                "nested": {"k": [1, 2]}}
            assert await db.execute("UPDATE agents SET state = $1 WHERE type = $2",
                                    "idle", "t") == 1
            assert await db.fetch("SELECT agent_id FROM agents WHERE state = $1", "none") == []
            row = await db.fetchrow("INSERT INTO agents (agent_id, name, type) VALUES ($1, $1, $2)"
                                    " RETURNING id, agent_id", "h2", "t")
            assert row is not None and row["agent_id"] == "h2"
            with pytest.raises(SqlTextError):
                await db.execute_query("SELECT $1, $2", 1)
            with pytest.raises(psycopg.errors.UniqueViolation):
                await db.execute_query("INSERT INTO agents (agent_id, name, type)"
                                       " VALUES ($1, $1, 't')", "h1")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await db.execute_query("CREATE TABLE nope (x int)")
            assert db.stats.retries == 0  # real errors are raised at once, not retried
            assert await db.health_check()

    asyncio.run(main())
