"""Client-side state of the agent API that needs no server: metric buffering, claim tokens,
argument adaptation, and statements refused before they are sent."""

from __future__ import annotations

import asyncio
import time

import pytest
from psycopg.types.json import Jsonb

from background_agents.agent_api import AgentClient, CpuMeter
from background_agents.config import AdapterConfig
from background_agents.coordination.postgresql_adapter import (
    NotConnectedError,
    PostgreSQLAdapter,
    adapt_args,
)
from background_agents.sqltext import SqlTextError


def client(max_buffered: int = 10_000) -> AgentClient:
    db = PostgreSQLAdapter(AdapterConfig(ssl_mode="disable"))  # never connected
    return AgentClient(db, "agent-1", max_buffered_metrics=max_buffered)


def test_metrics_are_buffered_until_flushed() -> None:
    c = client()
    c.record_metric("cpu_usage", 25.5, "percent", {"core": 0})
    c.record_metric("queue_depth", 3)
    assert c.pending_metrics == 2
    assert c.metrics_dropped == 0


def test_full_buffer_drops_the_oldest_samples() -> None:
    c = client(max_buffered=3)
    for i in range(5):
        c.record_metric("m", i)
    assert c.pending_metrics == 3
    assert c.metrics_dropped == 2
    assert [s.value for s in c._buffer] == [2.0, 3.0, 4.0]


def test_claim_tokens_strictly_increase() -> None:
    c = client()
    tokens = [c._claim_token() for _ in range(1000)]
    assert all(a < b for a, b in zip(tokens, tokens[1:], strict=False))


def test_dicts_are_sent_as_jsonb() -> None:
    out = adapt_args([{"a": 1}, [{"b": 2}, None], [1, 2], "x", 2.5])
    assert isinstance(out[0], Jsonb) and out[0].obj == {"a": 1}
    assert isinstance(out[1][0], Jsonb) and out[1][1] is None
    assert out[2:] == [[1, 2], "x", 2.5]


def test_empty_agent_id_is_refused() -> None:
    with pytest.raises(ValueError, match="agent_id"):
        AgentClient(PostgreSQLAdapter(AdapterConfig(ssl_mode="disable")), "")


def test_statements_are_checked_before_any_connection() -> None:
    db = PostgreSQLAdapter(AdapterConfig(ssl_mode="disable"))
    with pytest.raises(SqlTextError, match=r"no argument for \$3"):
        asyncio.run(db.execute_query("SELECT $1, $2, $3", 1, 2))
    with pytest.raises(SqlTextError, match="BEGIN is not supported"):
        asyncio.run(db.execute_query("BEGIN"))
    asyncio.run(db.close())
    with pytest.raises(NotConnectedError, match="closed"):  # no lazy reopen after close()
        asyncio.run(db.execute_query("SELECT 1"))


def test_a_metric_without_a_value_is_buffered_as_null() -> None:
    c = client()
    c.record_metric("cpu_usage", None, "percent", {"reason": "sensor down"})
    c.record_metric("queue_depth", 3)
    assert [(s.value, dict(s.metadata)) for s in c._buffer] == [
        (None, {"reason": "sensor down"}), (3.0, {})]


def test_help_priority_is_one_of_the_seeds_before_any_connection() -> None:
    c = client()
    asyncio.run(c.db.close())  # closed: no lazy connect, any statement sent fails at once
    with pytest.raises(ValueError, match=r"priority = 9: expected one of low, medium, high"):
        asyncio.run(c.request_help("stuck", priority=9))  # type: ignore[arg-type]
    with pytest.raises(NotConnectedError):  # a valid one goes on to the database
        asyncio.run(c.request_help("stuck", priority="high"))


def test_cpu_meter_measures_this_process() -> None:
    meter = CpuMeter()
    end = time.process_time() + 0.05
    while time.process_time() < end:  # busy: about one CPU
        pass
    busy = meter.percent()
    time.sleep(0.05)  # idle
    idle = meter.percent()
    assert busy > 5 and idle < busy / 2  # loose: the machine is shared
