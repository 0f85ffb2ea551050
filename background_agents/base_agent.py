"""BaseAgent: the lifecycle every background agent shares, so an agent only writes its work.

    class MyAgent(BaseAgent):
        agent_type = "worker"

        async def execute_cycle(self) -> None:           # one unit of work
            await self.db.execute_query(
                "INSERT INTO performance_metrics (agent_id, metric_name, value) "
                "VALUES ($1, $2, $3)", self.agent_id, "cpu_usage", 25.5)

    asyncio.run(MyAgent("agent-1").run())

The seed's own shape works unchanged too: `__init__(self, agent_id, shared_state)` calling
`super().__init__(agent_id, shared_state)`, then `self.db = PostgreSQLAdapter()` (the agent API
follows the new adapter), and the work in `async def do_work(self)` (run as the cycle when
execute_cycle is not overridden). shared_state is kept as self.shared_state, unused here.

run() connects (POSTGRESQL_* settings), registers (state running, started_at, config), sends a
heartbeat at once and then every heartbeat_interval seconds (60), flushes recorded metrics every
metrics_interval seconds (30) in one round trip, and calls execute_cycle() every cycle_interval
seconds until SIGTERM/SIGINT, stop(), max_cycles or max_seconds. A cycle that raises is counted
(error_count, sent with the next heartbeat), logged as an ERROR event, and the agent goes on.
Shutdown stops the loops, flushes metrics, sets state stopped and stopped_at, closes the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from background_agents.agent_api import AgentClient
from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter

log = logging.getLogger("background_agents.agent")


class BaseAgent:
    agent_type: ClassVar[str] = "generic"

    def __init__(self, agent_id: str, shared_state: Any = None, *, name: str | None = None,
                 config: Mapping[str, Any] | None = None, db: PostgreSQLAdapter | None = None,
                 heartbeat_interval: float = 60.0, metrics_interval: float = 30.0,
                 cycle_interval: float = 1.0) -> None:
        if heartbeat_interval <= 0 or metrics_interval <= 0 or cycle_interval < 0:
            raise ValueError("intervals must be positive")
        self.agent_id = agent_id
        self.shared_state = shared_state
        self.api = AgentClient(db if db is not None else PostgreSQLAdapter(), agent_id,
                               name=name, agent_type=self.agent_type, config=config)
        self.config = self.api.config
        self.heartbeat_interval = heartbeat_interval
        self.metrics_interval = metrics_interval
        self.cycle_interval = cycle_interval
        self.cycles = 0
        self.heartbeats_sent = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def db(self) -> PostgreSQLAdapter:
        return self.api.db

    @db.setter
    def db(self, adapter: PostgreSQLAdapter) -> None:
        # The seed assigns self.db after super().__init__(): registration, heartbeats and
        # metrics must go through that adapter too (the replaced one was never opened).
        self.api.db = adapter

    # --- hooks for subclasses ---

    async def initialize(self) -> None:
        """Called once after registration, before the first cycle."""

    async def execute_cycle(self) -> None:
        """One unit of the agent's work. Override it, or do_work (the seed's name)."""
        await self.do_work()

    async def do_work(self) -> None:
        """The seed's name for one unit of work (see execute_cycle)."""
        raise NotImplementedError(f"{type(self).__name__}: define do_work() or execute_cycle()")

    async def cleanup(self) -> None:
        """Called once at shutdown, before the agent is marked stopped."""

    def heartbeat_metrics(self) -> dict[str, Any]:
        """The metrics JSON of each heartbeat (override to add your own). The client adds
        cpu_usage, the key the seed's queries read (metrics->'cpu_usage'), unless given here."""
        return {"cycles": self.cycles, "pending_metrics": self.api.pending_metrics}

    # --- helpers ---

    def record_metric(self, name: str, value: float, unit: str | None = None,
                      tags: Mapping[str, Any] | None = None) -> None:
        self.api.record_metric(name, value, unit, tags)

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- lifecycle ---

    async def start(self) -> None:
        await self.db.connect()
        await self.api.register()
        await self._beat()
        await self.api.log_event("agent_started", {"config": self.config})
        self._tasks = [
            asyncio.create_task(self._every(self.heartbeat_interval, self._beat), name="heartbeat"),
            asyncio.create_task(self._every(self.metrics_interval, self.api.flush_metrics),
                                name="metrics"),
        ]
        await self.initialize()

    async def stop(self, state: str = "stopped") -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:
            await self.cleanup()
            await self.api.log_event("agent_stopped", {"cycles": self.cycles})
            await self.api.shutdown(state)
        finally:
            await self.db.close()

    async def run(self, *, max_cycles: int | None = None,
                  max_seconds: float | None = None) -> None:
        """Run until SIGTERM/SIGINT (or request_stop, max_cycles, max_seconds), then stop."""
        loop = asyncio.get_running_loop()
        handled = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
                handled.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread / platform
                pass
        end = None if max_seconds is None else time.monotonic() + max_seconds
        try:
            await self.start()
            while not self._stop.is_set():
                if max_cycles is not None and self.cycles >= max_cycles:
                    break
                if end is not None and time.monotonic() >= end:
                    break
                await self._cycle()
                if self.cycle_interval:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.cycle_interval)
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            await self.stop()

    async def _cycle(self) -> None:
        self.cycles += 1
        try:
            await self.execute_cycle()
        except Exception as exc:
            self.api.error_count += 1
            log.exception("%s: cycle %d failed", self.agent_id, self.cycles)
            with contextlib.suppress(Exception):
                await self.api.log_event("cycle_failed", {"cycle": self.cycles, "error": str(exc)},
                                         severity="ERROR")

    async def _beat(self) -> None:
        await self.api.heartbeat(self.heartbeat_metrics())
        self.heartbeats_sent += 1

    async def _every(self, interval: float, action: Any) -> None:
        # A failure (database unreachable past the retry budget) is logged; the loop goes on.
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if self._stop.is_set():
                return
            try:
                await action()
            except Exception:
                log.exception("%s: %s failed", self.agent_id, getattr(action, "__name__", action))
