"""The seed's usage: PostgreSQLAdapter() then a query, no connect step. Against an address where
nothing listens (a loopback port just released), the first query fails at once with an error
naming host and port; and a BaseAgent written the seed's way gets its cycle from do_work."""

from __future__ import annotations

import asyncio
import socket

import pytest

from background_agents.base_agent import BaseAgent
from background_agents.config import AdapterConfig
from background_agents.coordination.postgresql_adapter import (
    DatabaseUnavailable,
    PostgreSQLAdapter,
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_first_query_connects_and_names_where_it_could_not() -> None:
    port = closed_port()
    db = PostgreSQLAdapter(AdapterConfig(host="127.0.0.1", port=port, ssl_mode="disable",
                                         timeout=2.0))
    with pytest.raises(DatabaseUnavailable) as err:
        asyncio.run(db.execute_query("SELECT $1", 1))
    message = str(err.value)
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in message
    assert "database background_agents, user bg_agents_user" in message
    assert "refused" in message  # libpq's own reason


class SeedShaped(BaseAgent):
    def __init__(self, agent_id: str, shared_state: object) -> None:
        super().__init__(agent_id, shared_state)
        self.db = PostgreSQLAdapter(AdapterConfig(ssl_mode="disable"))
        self.done = 0

    async def do_work(self) -> None:
        self.done += 1


def test_seed_shaped_agent_keeps_its_adapter_and_runs_do_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRESQL_SSL_MODE", "disable")  # BaseAgent's own PostgreSQLAdapter()
    state = {"shared": True}
    agent = SeedShaped("seed-1", state)
    assert agent.shared_state is state
    assert agent.api.db is agent.db  # registration and heartbeats use the seed's adapter
    asyncio.run(agent.execute_cycle())
    assert agent.done == 1


def test_agent_without_work_says_what_to_define() -> None:
    agent = BaseAgent("a", db=PostgreSQLAdapter(AdapterConfig(ssl_mode="disable")))
    with pytest.raises(NotImplementedError, match=r"define do_work\(\) or execute_cycle\(\)"):
        asyncio.run(agent.execute_cycle())
