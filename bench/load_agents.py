"""Load test: N simulated agents with the seed's write mix, plus monitoring reads.

    python bench/load_agents.py --target direct=DSN --target pgbouncer=DSN \\
        [--agents 50,200,1000] [--duration 20] [--target-tps 5000] [--workers 2] \\
        [--label tuned] [--pgbench] [--evidence reports/load_evidence.json]

Each simulated agent is what a real one is: its own PostgreSQLAdapter (one pooled connection,
the library's retries) and AgentClient, running the agent mix on a compressed clock -

    heartbeat every 60 s, metrics batch (10 samples, one round trip) every 30 s, event every
    15 s, message sent every 20 s, inbox poll every 10 s (a read; a claim with FOR UPDATE SKIP
    LOCKED when something waits), LLM record every 60 s, help request every 300 s
    (0.287 operations per agent-second)

with the clock sped up so that the whole fleet offers --target-tps operations per second (each
operation is one write transaction; the ids it needs are taken from the sequences in blocks of
64, one extra round trip per block). Agents start at random phases. One more task runs the
monitoring queries (sql/monitoring: system_health, recent_heartbeats, active_agents) every
--monitor-interval seconds on its own connection; their latency is reported separately.

Per target and fleet size it prints sustained operations per second (client-measured), the
server's transactions per second (pg_stat_database, over the same window), p50/p95/p99 latency,
errors (a refused connection counts: direct connections beyond max_connections or the role's
limit), the monitoring reads' p95, how far behind schedule operations started (lag: a large lag
means the fleet could not keep up, and operations/s is then the capacity) and the CPU the
simulating processes used. Where pg_stat_statements is readable, the evidence also gets the
top statements of the window (calls, mean time, execution time per second): where the server's
time went. With --pgbench, pgbench runs bench/agent_mix.pgbench (the same mix, server-side ids
and timestamps, no client think time) against each target as a second, independent measurement,
after a calibration run of `SELECT 1` that shows what the machine gives any workload right now.

The evidence file (default reports/load_evidence.json) gets, per run, the figures (operations/s,
p50/p95/p99 ms, errors), the date, the target (host:port/database), fleet size and duration, the
git commit and tool version that measured them; and this host and its load average, the
server's version and a hash of its non-default settings, the bench configuration with its hash,
and a `summary` (best PgBouncer result, `seed_kpis_met`, `goal_met`, errors at 1,000 agents;
also per label). The readiness check `test_load_tested` (checks/evidence.py) reads the runs
themselves: one against the inventory's primary, recent, meeting the KPIs (readiness_*
settings). Results are merged by (label, target, agents), so runs against differently
configured servers (`--label stock`, `--label tuned`) sit side by side.

A target must be a database host of the inventory in use (inventory.py: $BGDB_HOSTS_FILE or the
sandbox lab), by name or address; the connection is pinned to the inventory's address. A primary
that holds other agents is loaded only with --confirm-existing-data. The run's agents are
`bgdb-loadtest-<run>-<nnnnn>`; when it ends - also on SIGINT/SIGTERM or an error - every row it
wrote is deleted (bgdb/loadtest_guard.py says how and why), and a run that could not clean up
(killed, connection lost) is removed by the next one or by --cleanup. The evidence file stays.
Every loop is bounded in time (--duration; connection and shutdown phases have timeouts) and in
count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from background_agents.agent_api import AgentClient  # noqa: E402
from background_agents.config import AdapterConfig  # noqa: E402
from background_agents.coordination.postgresql_adapter import (  # noqa: E402
    ID_TABLES,
    PostgreSQLAdapter,
)
from bgdb import loadtest_guard as guard  # noqa: E402
from deploy.hostdata import load_inventory  # noqa: E402
from deploy.settings import SettingsError  # noqa: E402

MONITORING_QUERIES = ("system_health", "recent_heartbeats", "active_agents")
PGBENCH_SCRIPT = REPO / "bench" / "agent_mix.pgbench"
# Seconds between operations of one agent in real time (the seed's cadence and a plausible mix).
MIX: dict[str, float] = {"heartbeat": 60, "metrics": 30, "event": 15, "send": 20,
                         "receive": 10, "llm": 60, "help": 300}
OPS_PER_AGENT_SECOND = sum(1 / s for s in MIX.values())
METRICS_PER_BATCH = 10
SEED_KPIS = {"min_tps": 1000, "max_p95_ms": 100}
GOALS = {"tps": 5000, "p95_ms": 10}
CONNECT_CONCURRENCY = 50


# --- targets ---

@dataclass(frozen=True)
class Target:
    name: str
    dsn: str

    @property
    def params(self) -> dict[str, Any]:
        return conninfo_to_dict(self.dsn)

    def where(self) -> str:
        p = self.params
        return f"{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p.get('dbname', '')}"


def adapter_config(dsn: str, application_name: str, timeout: float) -> AdapterConfig:
    p = conninfo_to_dict(dsn)
    extra = {k: str(v) for k, v in p.items()
             if k not in {"host", "port", "dbname", "user", "password", "sslmode", "sslrootcert",
                          "connect_timeout", "application_name"}}
    return AdapterConfig(
        host=str(p.get("host", "localhost")), port=int(str(p.get("port", 5432))),
        database=str(p.get("dbname", "background_agents")),
        user=str(p.get("user", "bg_agents_user")),
        password=str(p["password"]) if p.get("password") else None,
        ssl_mode=str(p.get("sslmode", "prefer")),
        ssl_root_cert=str(p["sslrootcert"]) if p.get("sslrootcert") else None,
        pool_size=1, pool_min_size=1, timeout=timeout, application_name=application_name,
        max_attempts=4, retry_max_delay=0.5, extra=extra)


# --- one simulated agent ---

@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lags: list[float] = field(default_factory=list)  # ms an operation started after it was due
    errors: Counter[str] = field(default_factory=Counter)
    connect_failures: int = 0
    agents_run: int = 0
    retries: int = 0
    cpu_seconds: float = 0.0
    server: dict[str, Any] = field(default_factory=dict)


class SimAgent:
    def __init__(self, run: str, index: int, fleet: int, target: Target, scale: float,
                 timeout: float) -> None:
        self.run_id = run
        self.index = index
        self.fleet = fleet
        self.scale = scale
        # One application_name for the fleet, as real agents share the default: a name per
        # client makes PgBouncer send a SET application_name before most transactions.
        self.db = PostgreSQLAdapter(adapter_config(target.dsn, "bench-agents", timeout),
                                    pool_kwargs={"num_workers": 1})
        self.client = AgentClient(self.db, guard.agent_id(run, index),
                                  agent_type=guard.AGENT_TYPE)
        self.client.state = "running"

    async def connect(self) -> None:
        await self.db.connect()
        # Warm up as a long-running agent is: the sequence names looked up and a block of ids
        # in hand for every table, so the measurement is of the steady state.
        for table in ID_TABLES:
            await self.db.next_ids(table, 1)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.db.close(), 10)

    async def op(self, kind: str, rng: random.Random) -> None:
        c = self.client
        if kind == "heartbeat":
            await c.heartbeat({"cpu_usage": rng.uniform(0, 100),
                               "memory_mb": rng.uniform(100, 900)})
        elif kind == "metrics":
            for n in range(METRICS_PER_BATCH):
                c.record_metric(f"metric_{n}", rng.random() * 100, "unit", {"n": n})
            await c.flush_metrics()
        elif kind == "event":
            await c.log_event("task_done", {"task": rng.randrange(1_000_000)},
                              severity="ERROR" if rng.random() < 0.01 else "INFO")
        elif kind == "send":
            await c.send_message(guard.agent_id(self.run_id, rng.randrange(self.fleet)), "task",
                                 {"n": 1})
        elif kind == "receive":
            await c.receive_messages(limit=10)
        elif kind == "llm":
            await c.record_llm_conversation("bench-model", "prompt " * 20, "answer " * 40,
                                            tokens_input=120, tokens_output=240, cost=0.0012,
                                            duration=rng.uniform(0.2, 3.0))
        elif kind == "help":
            await c.request_help("review, please", {"n": rng.randrange(100)},
                                 request_type="review")

    async def run(self, start: float, end: float, tally: Tally) -> None:
        rng = random.Random(self.index)
        intervals = {k: s / self.scale for k, s in MIX.items()}
        due = {k: start + rng.uniform(0, iv) for k, iv in intervals.items()}
        for _ in range(10_000_000):  # bounded; ends at `end`
            kind = min(due, key=due.__getitem__)
            at = due[kind]
            if at >= end or time.monotonic() >= end:
                break
            now = time.monotonic()
            if at > now:
                await asyncio.sleep(at - now)
            tally.lags.append(max(0.0, time.monotonic() - at) * 1000)
            t0 = time.perf_counter()
            try:
                await self.op(kind, rng)
                tally.latencies[kind].append((time.perf_counter() - t0) * 1000)
            except Exception as exc:
                tally.errors[f"{kind}: {type(exc).__name__}"] += 1
            # A fixed schedule: an agent that falls behind keeps the mix's proportions (and its
            # lag shows how far behind it is) instead of turning it into a round robin.
            due[kind] = at + intervals[kind]
        tally.retries += self.db.stats.retries


async def monitor(dsn: str, start: float, end: float, interval: float, tally: Tally) -> None:
    queries = {name: (REPO / "sql" / "monitoring" / f"{name}.sql").read_text()
               for name in MONITORING_QUERIES}
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                     prepare_threshold=None, connect_timeout=20)
    except psycopg.Error as exc:
        tally.errors[f"monitor connect: {type(exc).__name__}"] += 1
        return
    async with conn:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        for _ in range(1_000_000):
            if time.monotonic() >= end:
                break
            for name, query in queries.items():
                t0 = time.perf_counter()
                try:
                    await (await conn.execute(query)).fetchall()
                    tally.latencies[f"read:{name}"].append((time.perf_counter() - t0) * 1000)
                except psycopg.Error as exc:
                    tally.errors[f"read {name}: {type(exc).__name__}"] += 1
                    if conn.broken:
                        return
            await asyncio.sleep(interval)


async def worker_async(run: str, target: Target, indices: list[int], fleet: int, scale: float,
                       duration: float, monitor_dsn: str | None, stats_dsn: str | None,
                       monitor_interval: float, timeout: float, barrier: Any) -> Tally:
    tally = Tally()
    agents = [SimAgent(run, i, fleet, target, scale, timeout) for i in indices]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(a: SimAgent) -> SimAgent | None:
        async with gate:
            try:
                await a.connect()
                return a
            except Exception:
                tally.connect_failures += 1
                await a.close()
                return None

    ready = [a for a in await asyncio.gather(*(connect(a) for a in agents)) if a is not None]
    loop = asyncio.get_running_loop()
    # Every worker process starts measuring at the same moment.
    await loop.run_in_executor(None, barrier.wait, timeout * 3 + 60)
    cpu0 = time.process_time()
    start = time.monotonic() + 0.5
    end = start + duration
    tasks = [a.run(start, end, tally) for a in ready]
    if monitor_dsn:
        tasks.append(monitor(monitor_dsn, start, end, monitor_interval, tally))
    if stats_dsn:
        tasks.append(server_stats(stats_dsn, start, end, tally.server))
    await asyncio.wait_for(asyncio.gather(*tasks), duration + timeout * 2 + 30)
    tally.cpu_seconds = time.process_time() - cpu0
    tally.agents_run = len(ready)
    await asyncio.gather(*(a.close() for a in ready))
    return tally


def worker_main(run: str, target: Target, indices: list[int], fleet: int, scale: float,
                duration: float, monitor_dsn: str | None, stats_dsn: str | None,
                monitor_interval: float, timeout: float, barrier: Any, out: Any) -> None:
    # The parent stops the workers (SIGTERM, the default action: die) and then cleans up; a
    # terminal's Ctrl-C reaches the whole process group and is the parent's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise_nofile_limit()
    try:
        tally = asyncio.run(worker_async(run, target, indices, fleet, scale, duration,
                                         monitor_dsn, stats_dsn, monitor_interval, timeout,
                                         barrier))
        out.put(("ok", {"latencies": dict(tally.latencies), "errors": dict(tally.errors),
                        "connect_failures": tally.connect_failures,
                        "agents_run": tally.agents_run, "retries": tally.retries,
                        "lags": tally.lags, "cpu_seconds": tally.cpu_seconds,
                        "server": tally.server}))
    except BaseException as exc:  # report, never hang the parent
        with contextlib.suppress(Exception):
            barrier.abort()
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- scenario ---

def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return round(sorted_values[k], 3)


XACTS_SQL = ("SELECT xact_commit + xact_rollback FROM pg_stat_database"
             " WHERE datname = current_database()")
STATEMENTS_SQL = """
SELECT queryid, calls, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


async def _statements(conn: psycopg.AsyncConnection[Any]) -> dict[int, tuple[int, float, str]]:
    try:
        rows = await (await conn.execute(STATEMENTS_SQL)).fetchall()
    except psycopg.Error:  # no pg_stat_statements here, or not allowed to read it
        return {}
    return {r[0]: (r[1], r[2], r[3]) for r in rows if r[0] is not None}


async def server_stats(dsn: str, start: float, end: float, out: dict[str, Any]) -> None:
    """PostgreSQL's own view of the window [start, end]: transactions per second (committed +
    rolled back, ids, peeks and monitoring reads included) and, from pg_stat_statements, where
    the execution time went (top statements; `exec_cores` = execution time per second)."""
    try:
        async with await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, prepare_threshold=None, connect_timeout=20) as conn:
            counts, snaps = [], []
            for moment in (start, end + 1.0):  # + the statistics' flush interval
                await asyncio.sleep(max(0.0, moment - time.monotonic()))
                row = await (await conn.execute(XACTS_SQL)).fetchone()
                counts.append(int(row[0]) if row else 0)
                snaps.append(await _statements(conn))
    except psycopg.Error:
        return
    wall = end + 1.0 - start
    out["xact_per_s"] = (counts[1] - counts[0]) / wall
    if snaps[0] or snaps[1]:
        deltas = []
        for qid, (calls, total, text) in snaps[1].items():
            c0, t0, _ = snaps[0].get(qid, (0, 0.0, text))
            if calls > c0:
                deltas.append((total - t0, calls - c0, text))
        deltas.sort(reverse=True)
        out["exec_cores"] = round(sum(d[0] for d in deltas) / 1000 / wall, 3)
        out["top_statements"] = [
            {"query": text, "calls": calls, "mean_ms": round(ms / calls, 3),
             "exec_cores": round(ms / 1000 / wall, 3)} for ms, calls, text in deltas[:8]]


def prepare(dsn: str, run: str, fleet: int, until: datetime) -> None:
    """Register the fleet's agents (one statement), marked with the run and when it is over at
    the latest (a later run takes an unfinished run past that time for a leftover)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None, connect_timeout=20) as conn:
        conn.execute(
            "INSERT INTO agents (agent_id, name, type, state, started_at, metadata)"
            " SELECT %(prefix)s || lpad(g::text, 5, '0'), %(name)s, %(type)s, 'running', now(),"
            "        %(meta)s"
            " FROM generate_series(0, %(fleet)s - 1) g ON CONFLICT (agent_id) DO UPDATE"
            " SET state = 'running', stopped_at = NULL, metadata = EXCLUDED.metadata",
            {"prefix": guard.agent_prefix(run), "name": guard.AGENT_NAME,
             "type": guard.AGENT_TYPE, "fleet": fleet,
             "meta": Jsonb({"bgdb_loadtest": {"run": run, "until": until.isoformat()}})})


def run_deadline(fleet: int, args: argparse.Namespace) -> datetime:
    """When a scenario that starts now is over at the latest (its bounded phases and pgbench)."""
    seconds = args.duration + args.timeout * 6 + 120 + 60
    if args.pgbench:
        seconds += args.duration + 0.03 * fleet + 120
    return datetime.now(UTC) + timedelta(seconds=seconds)


def run_scenario(run: str, target: Target, fleet: int,
                 args: argparse.Namespace) -> dict[str, Any]:
    scale = args.target_tps / (fleet * OPS_PER_AGENT_SECOND)
    workers = max(1, min(args.workers, fleet))
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(workers)
    out = ctx.Queue()
    procs = []
    monitor_dsn = None if args.no_monitor else (args.monitor_dsn or target.dsn)
    for w in range(workers):
        indices = list(range(w, fleet, workers))
        p = ctx.Process(target=worker_main, args=(
            run, target, indices, fleet, scale, args.duration, monitor_dsn if w == 0 else None,
            (args.monitor_dsn or target.dsn) if w == 0 else None, args.monitor_interval,
            args.timeout, barrier, out), daemon=True)
        p.start()
        procs.append(p)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    results = []
    limit = args.duration + args.timeout * 6 + 120
    finished = False
    try:
        for _ in procs:
            try:
                results.append(out.get(timeout=max(1.0, limit - (time.monotonic() - started))))
            except Exception:
                results.append(("error", "worker did not report in time"))
        finished = True
    finally:  # interrupted: stop the workers now, before the run's rows are removed
        stop_workers(procs, grace=10 if finished else 0)
    load_after = os.getloadavg()[0]

    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    connect_failures = agents_run = retries = 0
    cpu_seconds = 0.0
    server: dict[str, Any] = {}
    lags: list[float] = []
    for status, payload in results:
        if status != "ok":
            errors[f"worker: {payload}"] += 1
            continue
        for k, v in payload["latencies"].items():
            latencies[k].extend(v)
        errors.update(payload["errors"])
        connect_failures += payload["connect_failures"]
        agents_run += payload["agents_run"]
        retries += payload["retries"]
        cpu_seconds += payload["cpu_seconds"]
        lags.extend(payload["lags"])
        server = payload["server"] or server
    lags.sort()
    if connect_failures:
        errors["connect"] += connect_failures
    writes = sorted(v for k, vs in latencies.items() if not k.startswith("read:") for v in vs)
    reads = sorted(v for k, vs in latencies.items() if k.startswith("read:") for v in vs)
    write_errors = sum(n for k, n in errors.items() if not k.startswith("read"))
    return {
        "label": args.label, "target": target.name, "where": target.where(),
        "agents": fleet, "agents_connected": agents_run, "duration_s": args.duration,
        "time_scale": round(scale, 2), "offered_tps": round(agents_run * OPS_PER_AGENT_SECOND
                                                            * scale, 1),
        "operations": len(writes), "tps": round(len(writes) / args.duration, 1),
        "server_xact_per_s": (round(server["xact_per_s"], 1) if "xact_per_s" in server
                              else None),
        "server_exec_cores": server.get("exec_cores"),
        "server_top_statements": server.get("top_statements", []),
        "p50_ms": percentile(writes, 50), "p95_ms": percentile(writes, 95),
        "p99_ms": percentile(writes, 99), "max_ms": round(writes[-1], 3) if writes else None,
        "errors": sum(errors.values()), "write_errors": write_errors,
        "errors_by_kind": dict(errors), "retries": retries,
        # How far behind schedule operations started (p95): large = the fleet could not keep
        # up with the offered rate (client CPU or server), and ops/s is then the capacity.
        "schedule_lag_p95_ms": percentile(lags, 95),
        # CPU the simulating processes used, in cores: near the machine's count = client-bound.
        "client_cpu_cores": round(cpu_seconds / args.duration, 2),
        "per_operation": {k: {"count": len(v), "p95_ms": percentile(sorted(v), 95)}
                          for k, v in sorted(latencies.items())},
        "reads": {"count": len(reads), "p50_ms": percentile(reads, 50),
                  "p95_ms": percentile(reads, 95)},
        # This machine's 1-minute load average before/after: other work skews the figures.
        "client_loadavg": [round(load_before, 2), round(load_after, 2)],
        "measured_at": now_iso(),
    }


def stop_workers(procs: list[Any], grace: float) -> None:
    for p in procs:
        p.join(timeout=grace)
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


# --- pgbench ---

def run_pgbench(run: str, target: Target, fleet: int,
                args: argparse.Namespace) -> dict[str, Any]:
    exe = shutil.which("pgbench")
    result: dict[str, Any] = {"label": args.label, "target": target.name,
                              "where": target.where(), "clients": fleet,
                              "duration_s": args.duration, "measured_at": now_iso()}
    if exe is None:
        return result | {"error": "pgbench not installed"}
    threads = max(1, min(args.workers, fleet))
    # pgbench's -T includes its connection phase (a TLS + SCRAM handshake per client): give
    # large client counts time for it, so that the measured part lasts about --duration.
    seconds = int(args.duration + 0.03 * fleet)
    result["duration_s"] = seconds
    with tempfile.TemporaryDirectory(prefix="bgdb-pgbench-") as tmp:
        cmd = [exe, "-n", "-M", "extended", "-c", str(fleet), "-j", str(threads),
               "-T", str(seconds), "-D", f"agents={fleet}",
               "-D", f"prefix={guard.agent_prefix(run)}", "-f", str(PGBENCH_SCRIPT),
               "-l", "--log-prefix", f"{tmp}/log", target.dsn]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            return result | {"error": "pgbench timed out"}
        out = proc.stdout + proc.stderr
        lat = []
        for log in Path(tmp).glob("log*"):
            for line in log.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    lat.append(int(parts[2]) / 1000)
        lat.sort()
    tps = next((float(line.split("=")[1].split()[0]) for line in out.splitlines()
                if line.startswith("tps =")), None)
    failed = next((line.split(":")[1].strip() for line in out.splitlines()
                   if line.startswith("number of failed transactions")), None)
    result |= {"tps": tps, "transactions": len(lat), "p50_ms": percentile(lat, 50),
               "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
               "failed": failed, "exit_code": proc.returncode}
    if proc.returncode != 0:
        result["error"] = " ".join(out.strip().splitlines()[-3:])[:500]
    return result


def run_calibration(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """pgbench `SELECT 1` (50 clients, 10 s): what this machine gives any workload right now,
    so that the mix's figures can be read against it (other work on a shared host shows)."""
    exe = shutil.which("pgbench")
    result: dict[str, Any] = {"label": args.label, "target": target.name,
                              "where": target.where(), "measured_at": now_iso()}
    if exe is None:
        return result | {"error": "pgbench not installed"}
    with tempfile.NamedTemporaryFile("w", suffix=".pgbench") as script:
        script.write("SELECT 1;\n")
        script.flush()
        try:
            proc = subprocess.run([exe, "-n", "-M", "extended", "-c", "50", "-j",
                                   str(max(1, args.workers)), "-T", "12", "-f", script.name,
                                   target.dsn], capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return result | {"error": "pgbench timed out"}
    tps = next((float(line.split("=")[1].split()[0]) for line in proc.stdout.splitlines()
                if line.startswith("tps =")), None)
    return result | {"select1_tps": tps, "loadavg": round(os.getloadavg()[0], 2)}


# --- evidence ---

def provenance() -> dict[str, Any]:
    """What measured: the bundle's commit (+dirty) and version, this script's hash, the
    client library's versions."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    try:
        from importlib.metadata import version
        bundle = version("background-agents-db")
    except Exception:  # not installed (a bare checkout)
        bundle = None
    return {"git_commit": commit, "tool": "bench/load_agents.py",
            "tool_version": bundle,
            "tool_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16],
            "psycopg": psycopg.__version__, "python": sys.version.split()[0]}


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def server_facts(dsn: str) -> dict[str, Any]:
    """Version, key settings and a hash of every non-default setting of the target's server."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None, connect_timeout=20) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE source NOT IN ('default', 'override')"
            " AND name NOT IN ('application_name', 'client_encoding', 'DateStyle',"
            " 'TimeZone', 'search_path', 'default_transaction_isolation', 'lc_messages')"
            " ORDER BY name").fetchall()
        keys = conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
            [["max_connections", "shared_buffers", "work_mem", "synchronous_commit",
              "wal_compression", "max_wal_size", "effective_cache_size"]]).fetchall()
    blob = json.dumps(rows, sort_keys=True).encode()
    return {"version": version[0] if version else None,
            "config_hash": "sha256:" + hashlib.sha256(blob).hexdigest(),
            "settings": dict(keys)}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The readiness checks' view, overall and per label: whether a PgBouncer run met the seed's
    KPIs (>= 1,000 operations/s with p95 < 100 ms and no write errors) or the goal (5,000/s,
    p95 < 10 ms), the best such run (else the fastest), and the errors at 1,000 agents through
    PgBouncer."""
    def ok(r: dict[str, Any], tps: float, p95: float) -> bool:
        return ((r.get("tps") or 0) >= tps and (r.get("p95_ms") or 1e9) < p95
                and r.get("write_errors", 1) == 0)

    def one(rows: list[dict[str, Any]]) -> dict[str, Any]:
        pooled = [r for r in rows if "pgbouncer" in r["target"]] or rows
        meeting = [r for r in pooled if ok(r, SEED_KPIS["min_tps"], SEED_KPIS["max_p95_ms"])]
        # The fastest run that meets the KPIs, else the fastest run.
        best = max(meeting or pooled, key=lambda r: r.get("tps") or 0, default=None)
        at_1000 = [r for r in pooled if r["agents"] >= 1000 and "pgbouncer" in r["target"]]
        return {
            "best": ({k: best.get(k) for k in ("label", "target", "where", "agents", "tps",
                                                "p95_ms", "errors", "measured_at")}
                     if best else None),
            "seed_kpis_met": bool(meeting),
            "goal_met": any(ok(r, GOALS["tps"], GOALS["p95_ms"]) for r in pooled),
            "pgbouncer_errors_at_1000_agents": (sum(r["errors"] for r in at_1000)
                                                if at_1000 else None),
        }

    summary = one(results)
    summary["by_label"] = {label: one([r for r in results if r["label"] == label])
                           for label in sorted({r["label"] for r in results})}
    return summary


def write_evidence(path: Path, new: list[dict[str, Any]], pgbench: list[dict[str, Any]],
                   calibration: list[dict[str, Any]], facts: dict[str, dict[str, Any]],
                   config: dict[str, Any], fresh: bool) -> dict[str, Any]:
    old: dict[str, Any] = {}
    if path.exists() and not fresh:
        with contextlib.suppress(ValueError, OSError):
            old = json.loads(path.read_text())

    def merge(old_rows: list[dict[str, Any]], rows: list[dict[str, Any]],
              key: tuple[str, ...]) -> list[dict[str, Any]]:
        fresh_keys = {tuple(r.get(k) for k in key) for r in rows}
        kept = [r for r in old_rows if tuple(r.get(k) for k in key) not in fresh_keys]
        return kept + rows

    made_by = provenance()
    new = [r | made_by for r in new]  # per run: merged files hold runs of several commits
    results = merge(old.get("results", []), new, ("label", "target", "agents"))
    bench = merge(old.get("pgbench", []), pgbench, ("label", "target", "clients"))
    calib = merge(old.get("calibration", []), calibration, ("label", "target"))
    servers = dict(old.get("servers", {}))
    servers.update(facts)
    evidence = {
        "schema": 1,
        "generated_at": now_iso(),
        "client_host": socket.gethostname(),
        "provenance": made_by,
        "kpis": {"seed": SEED_KPIS, "goal": GOALS},
        "config": config,
        "config_hash": "sha256:" + hashlib.sha256(
            json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "servers": servers,
        "results": results,
        "pgbench": bench,
        "calibration": calib,
        "summary": summarize(results),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(evidence, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return evidence


# --- output ---

def fmt(v: Any, width: int, digits: int = 1) -> str:
    if v is None:
        return f"{'-':>{width}}"
    if isinstance(v, float):
        return f"{v:>{width},.{digits}f}"
    return f"{v:>{width},}" if isinstance(v, int) else f"{v!s:>{width}}"


def print_results(results: list[dict[str, Any]], pgbench: list[dict[str, Any]]) -> None:
    print(f"\n{'label':<8} {'target':<10} {'agents':>6} {'conn':>5} {'offered':>8} {'ops/s':>8} "
          f"{'srv xact/s':>10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'read p95':>8} {'lag p95':>8} {'cli cpu':>7}")
    for r in sorted(results, key=lambda r: (r["agents"], r["label"], r["target"])):
        print(f"{r['label']:<8} {r['target']:<10} {fmt(r['agents'], 6)} "
              f"{fmt(r['agents_connected'], 5)} {fmt(r['offered_tps'], 8, 0)} "
              f"{fmt(r['tps'], 8, 0)} {fmt(r['server_xact_per_s'], 10, 0)} "
              f"{fmt(r['p50_ms'], 7, 2)} {fmt(r['p95_ms'], 7, 2)} {fmt(r['p99_ms'], 7, 2)} "
              f"{fmt(r['errors'], 6)} {fmt(r['reads']['p95_ms'], 8, 1)} "
              f"{fmt(r.get('schedule_lag_p95_ms'), 8, 0)} {fmt(r.get('client_cpu_cores'), 7, 2)}")
        if r["errors_by_kind"]:
            kinds = ", ".join(f"{k} x{n}" for k, n in sorted(r["errors_by_kind"].items()))
            print(f"{'':<27}errors: {kinds[:300]}")
    if pgbench:
        print(f"\npgbench ({PGBENCH_SCRIPT.name}, same mix, flat out)")
        print(f"{'label':<8} {'target':<10} {'clients':>7} {'tps':>8} {'p50 ms':>7} "
              f"{'p95 ms':>7} {'p99 ms':>7}  note")
        for r in sorted(pgbench, key=lambda r: (r["clients"], r["label"], r["target"])):
            print(f"{r['label']:<8} {r['target']:<10} {fmt(r['clients'], 7)} "
                  f"{fmt(r.get('tps'), 8, 0)} {fmt(r.get('p50_ms'), 7, 2)} "
                  f"{fmt(r.get('p95_ms'), 7, 2)} {fmt(r.get('p99_ms'), 7, 2)}  "
                  f"{r.get('error', '')[:120]}")


# --- a run that leaves no trace ---

class Stopped(BaseException):
    """SIGINT or SIGTERM: stop the workers, remove the run's rows, exit 128 + the signal.
    A BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    def stop(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def session(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True, prepare_threshold=None, connect_timeout=20)


def databases(targets: Sequence[Target]) -> list[Target]:
    """One target per database (direct and PgBouncer reach the same rows)."""
    seen: dict[tuple[str, str], Target] = {}
    for t in targets:
        p = t.params
        seen.setdefault((str(p.get("hostaddr")), str(p.get("dbname"))), t)
    return list(seen.values())


def preflight(targets: Sequence[Target], confirmed: bool) -> None:
    """Refuse a primary holding other agents (unless confirmed) or another run in progress;
    remove what earlier runs left behind."""
    now = guard.now_utc()
    for t in databases(targets):
        with session(t.dsn) as conn:
            foreign, example, runs = guard.survey(conn)
            refusal = guard.data_refusal(t.where(), foreign, example, confirmed)
            if refusal:
                raise guard.Refused(refusal)
            for r in runs:
                if r.live(now) and r.until is not None:
                    raise guard.Refused(
                        f"{t.where()}: load test run {r.run} ({len(r.agents)} agents) may still "
                        f"be running (until {r.until:%H:%M:%S} UTC), and two at once measure "
                        f"nothing: wait for it, or if it has ended (killed, or its cleanup "
                        f"failed) remove it with `bgdb loadtest --cleanup`")
            for r in runs:
                print(f"{guard.cleanup(conn, r).line()} (left over from an earlier run)",
                      flush=True)


def remove_every_run(targets: Sequence[Target]) -> int:
    """--cleanup: every load-test run's rows, a live-looking one's too."""
    for t in databases(targets):
        with session(t.dsn) as conn:
            runs = guard.survey(conn)[2]
            for r in runs:
                print(guard.cleanup(conn, r).line(), flush=True)
            if not runs:
                print(f"{t.where()}: no load test rows", flush=True)
    return 0


def remove_run(targets: Sequence[Target], run: guard.Run) -> bool:
    """The run's rows, from every database it loaded; False (and how to finish) on failure."""
    ok = True
    for t in databases(targets):
        try:
            with session(t.dsn) as conn:
                print(guard.cleanup(conn, run).line(), flush=True)
        except psycopg.Error as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"could not remove load test run {run.run} from {t.where()}: {detail}; the "
                  f"next load test (or `bgdb loadtest --cleanup`) removes it", file=sys.stderr)
            ok = False
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", action="append", required=True, metavar="NAME=DSN",
                    help="a target: name (e.g. direct, pgbouncer) and libpq DSN of a database "
                    "host of the inventory; repeatable")
    ap.add_argument("--agents", default="50,200,1000", help="fleet sizes, comma-separated")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds measured per run")
    ap.add_argument("--target-tps", type=float, default=5000.0,
                    help="operations per second the fleet offers (sets the time scale)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)),
                    help="client processes")
    ap.add_argument("--monitor-interval", type=float, default=1.0)
    ap.add_argument("--no-monitor", action="store_true")
    ap.add_argument("--monitor-dsn", help="run the monitoring reads here (default: the target;"
                    " e.g. direct, as dashboards and the exporter do, when PgBouncer's"
                    " max_client_conn is the fleet size)")
    ap.add_argument("--timeout", type=float, default=15.0,
                    help="per-agent connect/retry budget (POSTGRESQL_TIMEOUT)")
    ap.add_argument("--label", default="tuned", help="server configuration label")
    ap.add_argument("--pgbench", action="store_true", help="also run pgbench with the mix")
    ap.add_argument("--evidence", type=Path, default=REPO / "reports" / "load_evidence.json")
    ap.add_argument("--fresh", action="store_true", help="replace the evidence file's results")
    ap.add_argument(guard.CONFIRM_FLAG, action="store_true", dest="confirm_existing_data",
                    help="load a primary that holds other agents' data")
    ap.add_argument("--cleanup", action="store_true",
                    help="only remove what load tests left behind (every run's rows: do not "
                    "use while one is running)")
    args = ap.parse_args(argv)
    if not 1 <= args.duration <= 600:
        ap.error("--duration must be 1-600 s")
    fleets = [int(n) for n in args.agents.split(",") if n.strip()]
    if not fleets or any(not 1 <= n <= 5000 for n in fleets):
        ap.error("--agents: 1-5000 each")
    specs = []
    for spec in args.target:
        name, sep, dsn = spec.partition("=")
        if not sep or not name or not dsn:
            ap.error(f"--target {spec!r}: expected NAME=DSN")
        specs.append((name, dsn))
    try:
        hosts = load_inventory()
    except SettingsError as exc:
        print(f"load test refused: no inventory to check the targets against: {exc}",
              file=sys.stderr)
        return 2
    try:
        # Before any connection: only the inventory's database hosts.
        targets = [Target(name, guard.check_target(dsn, hosts)) for name, dsn in specs]
        if args.monitor_dsn:
            args.monitor_dsn = guard.check_target(args.monitor_dsn, hosts)
    except guard.Refused as exc:
        print(f"load test refused: {exc}", file=sys.stderr)
        return 2
    raise_nofile_limit()
    with stop_on_signals():
        try:
            if args.cleanup:
                return remove_every_run(targets)
            preflight(targets, args.confirm_existing_data)
            return measure(targets, fleets, args)
        except guard.Refused as exc:
            print(f"load test refused: {exc}", file=sys.stderr)
            return 2
        except Stopped as exc:
            print(f"load test stopped by {exc}", file=sys.stderr)
            return 128 + exc.signum


def measure(targets: list[Target], fleets: list[int], args: argparse.Namespace) -> int:
    run = guard.new_run_id()
    ours = guard.Run(run, tuple(guard.agent_id(run, i) for i in range(max(fleets))),
                     guard.now_utc(), None)
    print(f"load test run {run}: agents {guard.agent_id(run, 0)} ..., removed when it ends",
          flush=True)
    completed = False
    try:
        code = measure_run(run, targets, fleets, args)
        completed = True
    finally:
        if not completed:  # let statements still in flight on the server finish first
            time.sleep(1.0)
        try:
            cleaned = remove_run(targets, ours)
        except Stopped:
            print(f"cleanup interrupted: the next load test (or `bgdb loadtest --cleanup`) "
                  f"removes run {run}", file=sys.stderr)
            raise
    return code if cleaned else 1


def measure_run(run: str, targets: list[Target], fleets: list[int],
                args: argparse.Namespace) -> int:
    facts = {}
    for t in targets:
        facts[t.where()] = server_facts(t.dsn)
        print(f"{t.name}: {t.where()} PostgreSQL {facts[t.where()]['version']}, "
              f"{facts[t.where()]['settings']}", flush=True)
    results, pgbench, calibration = [], [], []
    if args.pgbench:
        for t in targets:
            calibration.append(run_calibration(t, args))
            print(f"calibration {t.name}: pgbench SELECT 1, 50 clients: "
                  f"{calibration[-1].get('select1_tps')} tps", flush=True)
    for fleet in fleets:
        for t in targets:
            prepare(t.dsn, run, fleet, run_deadline(fleet, args))
            print(f"-- {args.label} {t.name} {fleet} agents, {args.duration:g} s ...", flush=True)
            results.append(run_scenario(run, t, fleet, args))
            print_results(results[-1:], [])
            if args.pgbench:
                pgbench.append(run_pgbench(run, t, fleet, args))
    config = {"agents": fleets, "duration_s": args.duration, "target_tps": args.target_tps,
              "workers": args.workers, "mix_seconds": MIX, "metrics_per_batch": METRICS_PER_BATCH,
              "monitor_interval_s": None if args.no_monitor else args.monitor_interval,
              "monitor_on": "off" if args.no_monitor else ("separate" if args.monitor_dsn
                                                         else "target"),
              "targets": {t.name: t.where() for t in targets}, "label": args.label,
              "pgbench_script_sha256": hashlib.sha256(PGBENCH_SCRIPT.read_bytes()).hexdigest()}
    evidence = write_evidence(args.evidence, results, pgbench, calibration, facts, config,
                              args.fresh)
    print_results(evidence["results"], evidence["pgbench"])
    print(f"\nsummary: {json.dumps(evidence['summary'])}\nevidence: {args.evidence}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
