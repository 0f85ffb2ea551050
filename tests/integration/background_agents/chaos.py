"""Backend killing for the chaos tests: terminate a client's sessions at random 20-80 ms
intervals until its work is done, counting the kills."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable


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
