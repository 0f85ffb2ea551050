"""Write a shared_state.db like the agents' to try the migration on (for tests and the bench).

    python -m bgdb.sqlite_migration.sample out.db [--heartbeats 1000000] [--agents 100]

The tables are the seed's (agents, agent_heartbeats, performance_metrics, system_state,
system_events) as the agents' SQLite file holds them: loosely typed, timestamps in every form the
agents stored (ISO-8601 with 'Z', with an offset, space-separated without a zone, epoch seconds as
integer and as real), JSON as text, NULLs (one metric value in 50, as the seed allows). Rows are
generated inside SQLite by recursive CTEs (about a million rows per second), spread over the last
`days` days.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

# The seed's tables (../shared/seed.txt) as the agents created them in SQLite: the same names,
# SQLite's loose types (VARCHAR/TIMESTAMP/JSONB are only affinities there).
SCHEMA = """
CREATE TABLE agents (
    agent_id VARCHAR(255) PRIMARY KEY,
    state VARCHAR(50) NOT NULL,
    started_at TIMESTAMPTZ,
    stopped_at TIMESTAMPTZ,
    config JSONB,
    metadata JSONB,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE agent_heartbeats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id VARCHAR(255) NOT NULL,
    timestamp TIMESTAMPTZ NOT NULL,
    state VARCHAR(50),
    error_count INTEGER DEFAULT 0,
    metrics JSONB,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (agent_id) REFERENCES agents(agent_id) ON DELETE CASCADE
);
CREATE TABLE performance_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id VARCHAR(255) NOT NULL,
    metric_name VARCHAR(255) NOT NULL,
    value NUMERIC,
    unit VARCHAR(50),
    timestamp TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    metadata JSONB,
    FOREIGN KEY (agent_id) REFERENCES agents(agent_id) ON DELETE CASCADE
);
CREATE TABLE system_state (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key VARCHAR(255) UNIQUE NOT NULL,
    value JSONB,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_by VARCHAR(255)
);
CREATE TABLE system_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type VARCHAR(100) NOT NULL,
    event_data JSONB,
    agent_id VARCHAR(255),
    timestamp TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    severity VARCHAR(20) DEFAULT 'INFO'
);
"""

# The timestamp of row i, in one of five forms by i % 5 (:t0 epoch seconds, :step seconds/row).
_TS = """CASE i % 5
    WHEN 0 THEN strftime('%Y-%m-%dT%H:%M:%SZ', :t0 + i * :step, 'unixepoch')
    WHEN 1 THEN datetime(:t0 + i * :step, 'unixepoch')
    WHEN 2 THEN strftime('%Y-%m-%dT%H:%M:%f', :t0 + i * :step, 'unixepoch', '+2 hours')
                || '+02:00'
    WHEN 3 THEN CAST(:t0 + i * :step AS INTEGER)
    ELSE :t0 + i * :step + 0.25 END"""

_SERIES = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)"


def generate(path: Path, *, heartbeats: int = 1_000_000, agents: int = 100,
             metrics: int | None = None, events: int | None = None, days: float = 20.0) -> dict[
                 str, int]:
    """Create `path` (replacing it) and return the row count per table (of the metrics,
    null_metric_values(count) have a NULL value)."""
    metrics = heartbeats // 10 if metrics is None else metrics
    events = heartbeats // 100 if events is None else events
    path.unlink(missing_ok=True)
    now = time.time()
    t0 = now - days * 86400
    conn = sqlite3.connect(path)
    try:
        conn.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
        with conn:
            conn.execute(
                f"""{_SERIES} INSERT INTO agents (agent_id, state, started_at, stopped_at, config,
                                                 metadata)
                SELECT printf('agent-%05d', i),
                       CASE WHEN i % 10 = 0 THEN 'stopped' ELSE 'running' END,
                       datetime(:now - 86400 - i, 'unixepoch'),
                       CASE WHEN i % 10 = 0 THEN datetime(:now - i, 'unixepoch') END,
                       json_object('pool', i % 4, 'interval_s', 30),
                       CASE WHEN i % 7 = 0 THEN NULL ELSE json_object('region', 'eu') END
                FROM n""",
                {"count": agents, "now": now})
            step = days * 86400 / max(heartbeats, 1)
            conn.execute(
                f"""{_SERIES} INSERT INTO agent_heartbeats (agent_id, timestamp, state, metrics,
                                                           error_count)
                SELECT printf('agent-%05d', 1 + i % :agents), {_TS},
                       CASE WHEN i % 50 = 0 THEN 'degraded' ELSE 'running' END,
                       json_object('cpu_usage', i % 100, 'memory_mb', 200 + i % 800),
                       CASE WHEN i % 97 = 0 THEN NULL ELSE i % 3 END
                FROM n""",
                {"count": heartbeats, "agents": agents, "t0": t0, "step": step})
            step = days * 86400 / max(metrics, 1)
            # One value in 50 is NULL (the seed's value column allows it: a failed reading).
            conn.execute(
                f"""{_SERIES} INSERT INTO performance_metrics (agent_id, metric_name, value,
                                                              unit, timestamp, metadata)
                SELECT printf('agent-%05d', 1 + i % :agents),
                       CASE i % 3 WHEN 0 THEN 'cpu_usage' WHEN 1 THEN 'task_seconds'
                                  ELSE 'queue_depth' END,
                       CASE WHEN i % 50 = 0 THEN NULL ELSE (i % 1000) / 10.0 END,
                       CASE i % 3 WHEN 0 THEN 'percent' WHEN 1 THEN 'seconds' ELSE 'count' END,
                       :t0 + i * :step, json_object('host', printf('h%d', i % 4))
                FROM n""",
                {"count": metrics, "agents": agents, "t0": t0, "step": step})
            step = days * 86400 / max(events, 1)
            conn.execute(
                f"""{_SERIES} INSERT INTO system_events (event_type, severity, agent_id,
                                                        event_data, timestamp)
                SELECT CASE i % 3 WHEN 0 THEN 'task_done' WHEN 1 THEN 'task_failed'
                                  ELSE 'restart' END,
                       CASE i % 3 WHEN 1 THEN 'ERROR' ELSE 'INFO' END,
                       CASE WHEN i % 11 = 0 THEN NULL ELSE printf('agent-%05d', 1 + i % :agents)
                       END,
                       json_object('task', i), {_TS} FROM n""",
                {"count": events, "agents": agents, "t0": t0, "step": step})
            conn.executemany("INSERT INTO system_state (key, value, updated_at, updated_by)"
                             " VALUES (?, ?, ?, ?)",
                             [("leader", '"agent-00001"', "2024-05-01 10:00:00", "agent-00001"),
                              ("config", '{"mode": "fast"}', None, None)])
    finally:
        conn.close()
    return {"agents": agents, "heartbeats": heartbeats, "performance_metrics": metrics,
            "system_events": events, "system_state": 2}


def null_metric_values(metrics: int) -> int:
    """How many of `metrics` generated samples have a NULL value."""
    return metrics // 50


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bgdb.sqlite_migration.sample",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--heartbeats", type=int, default=1_000_000)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--days", type=float, default=20.0)
    args = ap.parse_args(argv)
    t = time.monotonic()
    counts = generate(args.path, heartbeats=args.heartbeats, agents=args.agents, days=args.days)
    print(f"wrote {args.path}: {sum(counts.values())} rows ({counts})"
          f" in {time.monotonic() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
