"""The seed's "Connection Management" example, verbatim (tests/fixtures/seed/
connection_pattern.txt), run as an agent against the deployed lab through PgBouncer: only the
POSTGRESQL_* variables set, no connect call. It registers, beats, writes its metric every cycle
and stops; its rows are in the tables and the exporter publishes its heartbeat while it runs
(a new agent appears at the exporter's next heartbeat search: within
exporter_agent_heartbeat_cache_seconds, 24 s by default, so the agent runs until it is seen)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from background_agents.base_agent import BaseAgent
from deploy import secrets
from tests.sandbox_fixtures import Deployed, admin_dsn
from tests.seed_sql import FIXTURES

SNIPPET = FIXTURES / "connection_pattern.txt"
EXPORTER_PORT = 9847
CYCLES = 20
# The agent runs at least CYCLES cycles and until the exporter has shown it: at most the
# heartbeat cache's lifetime (0.4 x 60 s) plus a scrape, with margin.
MAX_SECONDS = 45


def exporter_age(url: str, agent_id: str) -> float | None:
    """bgdb_agent_last_heartbeat_age_seconds of agent_id on the exporter's page, if there."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == "bgdb_agent_last_heartbeat_age_seconds" \
                    and s.labels.get("agent_id") == agent_id:
                return float(s.value)
    return None


async def watch_exporter(url: str, agent_id: str, agent: BaseAgent) -> float | None:
    """Scrape until the agent shows up (its age then; the agent is asked to stop once it has run
    CYCLES cycles) or has stopped (None)."""
    age = None
    while not agent.stopping:
        if age is None and agent.heartbeats_sent:
            age = await asyncio.to_thread(exporter_age, url, agent_id)
        if age is not None and agent.cycles >= CYCLES:
            agent.request_stop()
            break
        await asyncio.sleep(0.2)
    return age


def test_seed_example_agent_runs_verbatim(deployed: Deployed,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    address = deployed.primary.address
    for key, value in {
        "POSTGRESQL_HOST": address, "POSTGRESQL_PORT": "6432",
        "POSTGRESQL_DATABASE": "background_agents", "POSTGRESQL_USER": "bg_agents_user",
        "POSTGRESQL_PASSWORD": secrets.password("bg_agents_user"),
        "POSTGRESQL_SSL_MODE": "verify-full",
        "POSTGRESQL_SSL_ROOT_CERT": str(secrets.secrets_dir() / "ca" / "ca.crt"),
    }.items():
        monkeypatch.setenv(key, value)
    agent_id = f"seed-pattern-{uuid.uuid4().hex[:8]}"
    namespace: dict[str, Any] = {"BaseAgent": BaseAgent}
    exec(compile(SNIPPET.read_text(encoding="utf-8"), str(SNIPPET), "exec"), namespace)

    async def scenario() -> tuple[BaseAgent, float | None]:
        agent = namespace["ExampleAgent"](agent_id, {"shared": "state"})
        # Short intervals for the test: BaseAgent's own attributes, the snippet is unchanged.
        agent.cycle_interval, agent.heartbeat_interval = 0.15, 0.06
        watcher = asyncio.create_task(
            watch_exporter(f"http://{address}:{EXPORTER_PORT}/metrics", agent_id, agent))
        await agent.run(max_seconds=MAX_SECONDS)
        return agent, await watcher

    start = time.monotonic()
    agent, exported_age = asyncio.run(scenario())
    elapsed = time.monotonic() - start

    assert agent.cycles >= CYCLES and agent.heartbeats_sent >= CYCLES, (agent.cycles,
                                                                        agent.heartbeats_sent)
    with psycopg.connect(admin_dsn(address, "background_agents")) as conn:
        state = conn.execute("SELECT state, started_at IS NOT NULL, stopped_at IS NOT NULL"
                             " FROM agents WHERE agent_id = %s", [agent_id]).fetchall()
        metrics = conn.execute("SELECT metric_name, value, count(*) FROM performance_metrics"
                               " WHERE agent_id = %s GROUP BY 1, 2", [agent_id]).fetchall()
        beats = conn.execute("SELECT count(*), count(*) FILTER (WHERE metrics ? 'cpu_usage')"
                             " FROM agent_heartbeats WHERE agent_id = %s", [agent_id]).fetchone()
        conn.execute("DELETE FROM agents WHERE agent_id = %s", [agent_id])  # cascades
    assert state == [("stopped", True, True)]
    assert ("cpu_usage", 25.5, agent.cycles) in [(n, float(v), c) for n, v, c in metrics]
    assert beats == (agent.heartbeats_sent, agent.heartbeats_sent)
    assert exported_age is not None and 0 <= exported_age < 60, exported_age
    assert elapsed < MAX_SECONDS + 15
