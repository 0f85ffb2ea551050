"""Fill an agents database with N agents and M heartbeats (plus metrics and events) for benches.

    python bench/gen_heartbeats.py --dsn DSN [--agents 1000] [--heartbeats 10000000] [--days 30]
        [--live-minutes 60] [--interval 60]

The rows are made server-side by generate_series, in time order (the order agents write them),
in chunks of --chunk rows (one transaction each):
* the last --live-minutes: every running agent beats every --interval seconds, as in
  production (what the exporter's 3-interval window sees), except one in 50 running agents,
  silent since the live window began (the overdue agents an alert is about);
* the rest of the heartbeats spread evenly over the --days days before that, the metrics and
  events over the last --days days: most of the data is older than any monitoring window, as
  under 30-day retention.
agents.last_heartbeat is each agent's newest beat (agents update it on every beat).
bench/exporter_vs_postgres_exporter.py keeps the live tail current while it scrapes (top_up()).
The DSN needs a superuser or bg_agents_owner (it creates the past days' partitions first).
Prints the insert rate and the resulting table sizes.
"""

from __future__ import annotations

import argparse
import time

import psycopg

AGENTS_SQL = """
INSERT INTO agents (agent_id, name, type, state, started_at, last_heartbeat, config, metadata)
SELECT format('agent-%%s', lpad(g::text, 5, '0')),
       format('Agent %%s', g),
       (ARRAY['worker', 'planner', 'reviewer', 'monitor'])[1 + g %% 4],
       CASE WHEN g %% 100 = 0 THEN 'stopped' ELSE 'running' END,
       now() - make_interval(days => %(days)s),
       now(),
       jsonb_build_object('pool', g %% 10, 'interval_s', 30),
       jsonb_build_object('region', (ARRAY['eu', 'us', 'ap'])[1 + g %% 3])
FROM generate_series(1, %(agents)s::integer) g
ON CONFLICT (agent_id) DO NOTHING
"""

# Row g of M is at now() - %(offset)s s - (M - g) * step: evenly spaced, the last one at the
# start of the live window.
HEARTBEATS_SQL = """
INSERT INTO agent_heartbeats (agent_id, timestamp, state, metrics, error_count)
SELECT format('agent-%%s', lpad((1 + g %% %(agents)s)::text, 5, '0')),
       now() - (%(offset)s + (%(total)s - g) * %(step)s) * interval '1 second',
       CASE WHEN g %% 50 = 0 THEN 'degraded' ELSE 'running' END,
       jsonb_build_object('cpu_usage', g %% 100, 'memory_mb', 200 + g %% 800),
       (g %% 97 = 0)::integer
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
"""

METRICS_SQL = """
INSERT INTO performance_metrics (agent_id, metric_name, value, unit, metadata, timestamp)
SELECT format('agent-%%s', lpad((1 + g %% %(agents)s)::text, 5, '0')),
       (ARRAY['task_seconds', 'queue_depth', 'tokens_per_second'])[1 + g %% 3],
       (g %% 1000) / 10.0,
       (ARRAY['s', 'count', 'tokens/s'])[1 + g %% 3],
       jsonb_build_object('pool', g %% 10),
       now() - (%(offset)s + (%(total)s - g) * %(step)s) * interval '1 second'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
"""

# One in 50 running agents is silent (SILENT): no beat in the live window.
SILENT = "g %% 50 = 25"

# The live window: agent g beats at now() - k * interval - (g mod interval) s, k = 0, 1, ...
LIVE_SQL = f"""
INSERT INTO agent_heartbeats (agent_id, timestamp, state, metrics, error_count)
SELECT format('agent-%%s', lpad(g::text, 5, '0')),
       now() - make_interval(secs => k * %(interval)s + g %% %(interval)s),
       CASE WHEN (g + k) %% 50 = 0 THEN 'degraded' ELSE 'running' END,
       jsonb_build_object('cpu_usage', (g + k) %% 100, 'memory_mb', 200 + (g * k) %% 800),
       ((g + k) %% 97 = 0)::integer
FROM generate_series(1, %(agents)s::integer) g,
     generate_series(0, %(beats)s - 1) k
WHERE g %% 100 <> 0 AND NOT ({SILENT})
ORDER BY k DESC, g
"""

LAST_HEARTBEAT_SQL = """
UPDATE agents AS a SET last_heartbeat = h.ts
FROM (SELECT agent_id, max(timestamp) AS ts FROM agent_heartbeats
      WHERE timestamp > now() - interval '2 days' GROUP BY agent_id) AS h
WHERE h.agent_id = a.agent_id
"""

EVENTS_SQL = """
INSERT INTO system_events (event_type, severity, source, agent_id, event_data, timestamp)
SELECT (ARRAY['task_done', 'task_failed', 'restart'])[1 + g %% 3],
       (ARRAY['INFO', 'ERROR', 'WARNING'])[1 + g %% 3],
       'bench',
       format('agent-%%s', lpad((1 + g %% %(agents)s)::text, 5, '0')),
       jsonb_build_object('task', g),
       now() - (%(offset)s + (%(total)s - g) * %(step)s) * interval '1 second'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
"""


def fill(conn: psycopg.Connection, query: str, total: int, agents: int, days: int,
         chunk: int, label: str, offset: float) -> None:
    if total <= 0:
        return
    step = days * 86400.0 / total
    start = time.monotonic()
    for lo in range(1, total + 1, chunk):
        hi = min(lo + chunk - 1, total)
        conn.execute(query, {"agents": agents, "total": total, "step": step, "lo": lo, "hi": hi,
                             "offset": offset})
    took = time.monotonic() - start
    print(f"{label:<20} {total:>12,} rows  {took:8.1f} s  {total / took:>10,.0f} rows/s",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--heartbeats", type=int, default=10_000_000)
    ap.add_argument("--metrics", type=int, help="default: heartbeats / 10")
    ap.add_argument("--events", type=int, help="default: heartbeats / 1000")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--chunk", type=int, default=500_000)
    ap.add_argument("--live-minutes", type=int, default=60,
                    help="minutes of live heartbeats (every running agent each --interval s)")
    ap.add_argument("--interval", type=int, default=60, help="agents' heartbeat interval, s")
    args = ap.parse_args()
    metrics = args.heartbeats // 10 if args.metrics is None else args.metrics
    events = args.heartbeats // 1000 if args.events is None else args.events

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT count(*) FROM bgdb_partition_premake(%(ahead)s,"
            " ((now() AT TIME ZONE 'UTC')::date - %(days)s))",
            {"ahead": args.days + 14, "days": args.days},
        )
        conn.execute(AGENTS_SQL, {"agents": args.agents, "days": args.days})
        beats = args.live_minutes * 60 // args.interval
        live = sum(1 for g in range(1, args.agents + 1) if g % 100 and g % 50 != 25) * beats
        offset = args.live_minutes * 60.0
        fill(conn, HEARTBEATS_SQL, args.heartbeats - live, args.agents, args.days, args.chunk,
             "agent_heartbeats", offset)
        start = time.monotonic()
        conn.execute(LIVE_SQL, {"agents": args.agents, "beats": beats,
                                "interval": args.interval})
        print(f"{'live heartbeats':<20} {live:>12,} rows  {time.monotonic() - start:8.1f} s",
              flush=True)
        conn.execute(LAST_HEARTBEAT_SQL)
        # Metrics and events keep coming up to now (their 5-minute windows are not empty).
        fill(conn, METRICS_SQL, metrics, args.agents, args.days, args.chunk,
             "performance_metrics", 0.0)
        fill(conn, EVENTS_SQL, events, args.agents, args.days, args.chunk, "system_events", 0.0)
        start = time.monotonic()
        # VACUUM too: in production autovacuum has long been through the old days' partitions
        # (visibility map set, hint bits written); a fresh bulk load would leave that work to
        # the first scrapes.
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY agent_health_summary")
        print(f"{'vacuum + refresh':<20} {time.monotonic() - start:29.1f} s")
        for name, size in conn.execute(
            "SELECT t, pg_size_pretty(sum(pg_total_relation_size(p.relid)))"
            " FROM unnest(ARRAY['agent_heartbeats', 'performance_metrics', 'system_events']) t,"
            " pg_partition_tree(t::regclass) p GROUP BY t ORDER BY t"
        ):
            print(f"{name:<20} {size:>12}")


if __name__ == "__main__":
    main()
