"""An example agent, written exactly as the seed writes them: `self.db.execute_query` with `$n`.

    POSTGRESQL_HOST=... POSTGRESQL_PORT=6432 POSTGRESQL_PASSWORD=... \\
    POSTGRESQL_SSL_ROOT_CERT=.secrets/ca/ca.crt \\
        python -m background_agents.example_agent --agent-id example-1 [--cycles 10]

Each cycle writes one cpu_usage sample with the seed's own statement, records a buffered metric
(sent in batches by BaseAgent) and, now and then, an event. Stop it with SIGTERM or Ctrl-C: it
marks itself stopped in the agents table before exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from background_agents.base_agent import BaseAgent


def cpu_usage() -> float:
    """The 1-minute load average as a percentage of the CPUs (a cheap, portable stand-in)."""
    return round(100.0 * os.getloadavg()[0] / (os.cpu_count() or 1), 1)


class ExampleAgent(BaseAgent):
    agent_type = "example"

    async def execute_cycle(self) -> None:
        await self.db.execute_query(
            "INSERT INTO performance_metrics (agent_id, metric_name, value) VALUES ($1, $2, $3)",
            self.agent_id, "cpu_usage", cpu_usage())
        self.record_metric("cycle_count", self.cycles, unit="count")
        if self.cycles % 10 == 0:
            await self.api.log_event("checkpoint", {"cycle": self.cycles})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent-id", default=f"example-{os.getpid()}")
    ap.add_argument("--cycles", type=int, default=None, help="stop after this many cycles")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between cycles")
    ap.add_argument("--heartbeat-interval", type=float, default=60.0)
    ap.add_argument("--metrics-interval", type=float, default=30.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    agent = ExampleAgent(args.agent_id, cycle_interval=args.interval,
                         heartbeat_interval=args.heartbeat_interval,
                         metrics_interval=args.metrics_interval)
    asyncio.run(agent.run(max_cycles=args.cycles))


if __name__ == "__main__":
    main()
