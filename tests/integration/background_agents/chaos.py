"""The chaos tests' two halves: an agent's workload whose acknowledged writes are recorded, and
a killer that terminates the agent's sessions at random 20-80 ms intervals until it is done."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from background_agents.agent_api import AgentClient
from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter

SEED_INSERT = ("INSERT INTO performance_metrics (agent_id, metric_name, value)"
               " VALUES ($1, $2, $3)")


async def kill_until(done: asyncio.Event, kill_once: Callable[[], Awaitable[int]]) -> int:
    """Call `kill_once` at random 20-80 ms intervals until `done` is set; the total it killed.
    Bounded (2,000 rounds) so a worker that never finishes cannot hang the test forever."""
    kills = 0
    for _ in range(2000):
        if done.is_set():
            break
        await asyncio.sleep(random.uniform(0.02, 0.08))
        kills += await kill_once()
    return kills


async def agent_workload(db: PostgreSQLAdapter, client: AgentClient, agent_id: str, rounds: int,
                         done: asyncio.Event) -> tuple[list[int], list[int]]:
    """`rounds` of the seed's insert (metric "chaos", value i), a batched metric
    ("chaos-batched"), an event every 3rd round and a heartbeat every 25th. Returns the rounds
    whose insert and whose event were acknowledged; sets `done` however it ends."""
    acked_seed: list[int] = []
    acked_events: list[int] = []
    try:
        for i in range(rounds):
            # The seed's statement, as a guarded write; acknowledged = returned.
            await db.execute_query(SEED_INSERT, agent_id, "chaos", float(i))
            acked_seed.append(i)
            client.record_metric("chaos-batched", i)
            if i % 3 == 0:
                await client.log_event("chaos", {"i": i})
                acked_events.append(i)
            if i % 25 == 0:
                await client.heartbeat()
                await client.flush_metrics()
        await client.flush_metrics()
    finally:
        done.set()
    return acked_seed, acked_events
