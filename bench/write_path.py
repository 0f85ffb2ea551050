"""The agents' write path (issue 24), measured side by side in one run on one database host.

    .venv/bin/python bench/write_path.py [--host NAME] \\
        [--only tax,routing,pooled,batched,open,fleet] [--rounds 1] [--seconds 20] \\
        [--fill 10000000] [--fleet-agents 1000] [--cleanup]
    make bench            (the same, defaults)

Targets the inventory's primary (the sandbox lab by default, or $BGDB_HOSTS_FILE hosts): it
must be deployed. Prints, each pair run back to back (the machine's cores are shared: ratios,
not absolute figures, are what carries over), with the load average at each run:

  tax     the write mix (bench/write_mix.pgbench: single-row heartbeat/metric/event inserts)
          into our tables vs the seed's plain tables (bench/seed_tables.sql in schema
          bgdb_bench_plain) on the same server, direct TLS, prepared, 64 clients; both sides
          after a history of --fill rows each (ours: daily partitions created, filled and
          dropped by retention; the seed's: rows inserted then deleted and vacuumed, as its
          maintenance does; a fifth stays in today's partition/table, so indexes have grown)
  routing (not in the default set) the tax's main part alone: the same mix into our parents vs
          straight into today's partitions (same indexes, foreign keys, triggers), ABBA
  pooled  the same mix, direct TLS prepared vs PgBouncer TLS at 64 clients (prepared where
          PgBouncer has max_prepared_statements, else the simple protocol it forces), ABBA
  batched the path without prepared statements through PgBouncer (Debian 11/12): the same rows,
          metrics ten to a statement as the client's flush_metrics sends them, extended
          protocol with unnamed statements, vs direct TLS prepared single rows; in rows/s
  open    open loop (pgbench -R) through PgBouncer + TLS, 256 clients: p95 at 4,000 TPS offered
          and the highest offered rate (from a ladder) whose p95 stays < 20 ms
  fleet   --fleet-agents agents x the seed's pool size (app_pool_size) client connections
          through PgBouncer + TLS, each agent sending a heartbeat every 60 s and a metric every
          30 s on a clock sped up --fleet-speedup times: connections refused, errors

The bench's agents are bgdb-bench-<n>; their rows and the plain schema stay for the next run
(the fill is done once) until --cleanup removes them. A primary holding other agents is only
used with --confirm-existing-data.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from bgdb import targets  # noqa: E402
from bgdb.remote import Target  # noqa: E402
from deploy import secrets  # noqa: E402
from deploy.settings import Data, app_settings, pgbouncer_port  # noqa: E402

MIX = REPO / "bench" / "write_mix.pgbench"
MIX_BATCHED = REPO / "bench" / "write_mix_batched.pgbench"
ROWS_PER_TX_BATCHED = 100 / 64  # its header: 50 + 40 + 10 rows per 50 + 4 + 10 statements
SEED_TABLES = REPO / "bench" / "seed_tables.sql"
PLAIN = "bgdb_bench_plain"
PREFIX = "bgdb-bench-"
AGENTS = 1000
P95_GOAL_MS = 20.0
OPEN_RATES = (2000, 3000, 4000, 5000, 6000, 8000)


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


# --- setup: the plain tables, the bench's agents, the history ---

def sql(t: Target, query: str) -> list[list[str]]:
    return t.sql(query)


def setup(t: Target, app_user: str, fill: int, confirmed: bool) -> None:
    others = t.value(f"SELECT count(*) FROM agents WHERE agent_id NOT LIKE '{PREFIX}%'")
    if int(others or 0) and not confirmed:
        raise SystemExit(f"{t.name} holds {others} agents that are not the bench's: pass "
                         "--confirm-existing-data to write bench rows next to them")
    if t.value(f"SELECT to_regclass('{PLAIN}.agents') IS NOT NULL") != "t":
        ddl = SEED_TABLES.read_text()
        sql(t, f"CREATE SCHEMA IF NOT EXISTS {PLAIN}; SET search_path = {PLAIN}; {ddl}"
               f" GRANT USAGE ON SCHEMA {PLAIN} TO {app_user};"
               f" GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {PLAIN}"
               f" TO {app_user};"
               f" GRANT USAGE ON ALL SEQUENCES IN SCHEMA {PLAIN} TO {app_user};")
    for schema in ("public", PLAIN):
        sql(t, f"INSERT INTO {schema}.agents (agent_id, state) SELECT '{PREFIX}' || g, 'running'"
               f" FROM generate_series(0, {AGENTS - 1}) g ON CONFLICT (agent_id) DO NOTHING")
    done = t.value(f"SELECT obj_description('{PLAIN}'::regnamespace, 'pg_namespace')")
    if done == f"filled {fill}" or fill <= 0:
        return
    started = time.monotonic()
    kept = fill // 5
    history = fill - kept
    # Ours: ten old days get partitions, take the history, and retention drops them.
    sql(t, "SELECT count(*) FROM bgdb_partition_premake(9, current_date - 45)")
    fill_rows(t, "public", history, "now() - interval '45 days'", "interval '9 days'")
    sql(t, "SELECT count(*) FROM bgdb_partition_retention(30)")
    fill_rows(t, "public", kept, "date_trunc('day', now())", "(now() - date_trunc('day', now()))")
    # The seed's: the same rows into its plain tables, the old ones deleted as its retention
    # does (DELETE ... WHERE timestamp < now() - 30 days), then vacuumed.
    fill_rows(t, PLAIN, history, "now() - interval '45 days'", "interval '9 days'")
    for table in ("agent_heartbeats", "performance_metrics", "system_events"):
        sql(t, f"DELETE FROM {PLAIN}.{table} WHERE timestamp < now() - interval '30 days'")
    fill_rows(t, PLAIN, kept, "date_trunc('day', now())", "(now() - date_trunc('day', now()))")
    for schema in (PLAIN, "public"):  # one statement each: VACUUM runs outside a transaction
        sql(t, f"VACUUM ANALYZE {schema}.agent_heartbeats, {schema}.performance_metrics, "
               f"{schema}.system_events")
    sql(t, f"COMMENT ON SCHEMA {PLAIN} IS 'filled {fill}'")
    print(f"history: {fill:,} rows into each side in {time.monotonic() - started:.0f} s "
          f"({history:,} expired and removed, {kept:,} kept today)", flush=True)


def fill_rows(t: Target, schema: str, rows: int, start: str, span: str) -> None:
    """`rows` rows split like the mix (50/40/10), timestamps spread over [start, start+span)."""
    def ts(n: int) -> str:
        return f"{start} + {span} * (g::float8 / {n})"

    def agent() -> str:
        return f"'{PREFIX}' || (g % {AGENTS})"

    hb, pm = rows // 2, rows * 2 // 5
    ev = rows - hb - pm
    sql(t, f"INSERT INTO {schema}.agent_heartbeats (agent_id, timestamp, state, error_count,"
           f" metrics) SELECT {agent()}, {ts(hb)}, 'running', 0,"
           f" jsonb_build_object('cpu_usage', g % 100, 'memory_mb', 512)"
           f" FROM generate_series(1, {hb}) g")
    sql(t, f"INSERT INTO {schema}.performance_metrics (agent_id, metric_name, value, timestamp)"
           f" SELECT {agent()}, 'metric_' || (g % 20), g % 1000, {ts(pm)}"
           f" FROM generate_series(1, {pm}) g")
    sql(t, f"INSERT INTO {schema}.system_events (event_type, event_data, agent_id, severity,"
           f" timestamp) SELECT 'task_done', jsonb_build_object('task', g), {agent()}, 'INFO',"
           f" {ts(ev)} FROM generate_series(1, {ev}) g")


def cleanup(t: Target) -> None:
    sql(t, f"DROP SCHEMA IF EXISTS {PLAIN} CASCADE")
    sql(t, f"DELETE FROM system_events WHERE agent_id LIKE '{PREFIX}%'")
    sql(t, f"DELETE FROM agents WHERE agent_id LIKE '{PREFIX}%'")  # cascades to their rows
    print(f"removed {PLAIN} and the {PREFIX}* agents' rows")


# --- pgbench ---

@dataclass
class Run:
    label: str
    tps: float
    p50: float
    p95: float
    failed: int
    note: str
    rows_per_tx: float = 1.0

    @property
    def rows(self) -> float:
        """Agent writes (rows) per second: what the pairs compare."""
        return self.tps * self.rows_per_tx

    def line(self) -> str:
        rows = f" = {self.rows:.0f} rows/s" if self.rows_per_tx != 1.0 else ""
        return (f"  {self.label:<44} {self.tps:>8.0f} TPS{rows}  p50 {self.p50:6.1f} ms  "
                f"p95 {self.p95:6.1f} ms  failed {self.failed}  ({self.note})")


def conninfo(host: str, port: int, app_user: str, database: str, schema: str | None) -> str:
    ca = secrets.secrets_dir() / "ca/ca.crt"
    info = (f"host={host} port={port} dbname={database} user={app_user} sslmode=verify-full "
            f"sslrootcert={ca}")
    return info + (f" options='-csearch_path={schema}'" if schema else "")


def pgbench(label: str, dsn: str, *, clients: int, seconds: int, mode: str,
            rate: int | None = None, script: Path = MIX, rows_per_tx: float = 1.0) -> Run:
    exe = shutil.which("pgbench")
    if not exe:
        raise SystemExit("pgbench is not installed (apt-get install postgresql-client)")
    note = load()
    with tempfile.TemporaryDirectory(prefix="bgdb-bench-") as tmp:
        cmd = [exe, "-n", "-M", mode, "-c", str(clients), "-j", str(min(clients, 4)),
               "-T", str(seconds), "-D", f"agents={AGENTS}",
               "-l", "--log-prefix", f"{tmp}/tx", "-f", str(script)]
        if rate:
            cmd += ["-R", str(rate)]
        env = {**os.environ, "PGPASSWORD": secrets.password("bg_agents_user",
                                                            env="POSTGRESQL_PASSWORD")}
        out = subprocess.run([*cmd, dsn], capture_output=True, text=True, env=env,
                             timeout=seconds + 120)
        if out.returncode not in (0, 2):
            raise SystemExit(f"pgbench {label} failed (rc {out.returncode}):\n"
                             f"{out.stderr[-2000:]}")
        latencies = sorted(int(line.split()[2]) / 1000 for f in Path(tmp).glob("tx*")
                           for line in f.read_text().splitlines() if line.split()[2] != "skipped")
    tps = float(m[1]) if (m := re.search(r"tps = ([\d.]+)", out.stdout)) else 0.0
    failed = int(m[1]) if (m := re.search(r"number of failed transactions: (\d+)",
                                          out.stdout)) else 0
    if out.returncode == 2:  # a client aborted (a refused connection, an error)
        errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
        failed += len(errors) or 1
        note += f"; {errors[0] if errors else 'aborted'}"
    return Run(label, tps, pct(latencies, 0.50), pct(latencies, 0.95), failed, note,
               rows_per_tx)


# What the server did besides the bench during a step (the open loop's tail swings 3-180 ms at
# one offered rate depending on what ran before): checkpoints and the buffers they wrote,
# autovacuum/autoanalyze runs in the application database, WAL written. PostgreSQL 17 moved
# the checkpoint counters to pg_stat_checkpointer.
ACTIVITY_SQL = {
    "old": "SELECT checkpoints_timed + checkpoints_req, buffers_checkpoint FROM pg_stat_bgwriter",
    "17": "SELECT num_timed + num_requested, buffers_written FROM pg_stat_checkpointer",
}
VACUUMS_SQL = "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0), {wal} " \
    "FROM pg_stat_all_tables"


def activity(t: Target) -> tuple[int, int, int, int]:
    """(checkpoints, checkpoint buffers, autovacuum + autoanalyze runs, WAL bytes) so far."""
    version = int(t.value("SHOW server_version_num") or 0)
    ckpt = sql(t, ACTIVITY_SQL["17" if version >= 170000 else "old"])[0]
    # pg_stat_wal: PostgreSQL 14+ (Debian 11's 13 reports 0 WAL)
    wal = "(SELECT wal_bytes FROM pg_stat_wal)" if version >= 140000 else "0"
    vac = sql(t, VACUUMS_SQL.format(wal=wal))[0]
    return int(ckpt[0]), int(ckpt[1]), int(vac[0]), int(float(vac[1]))


def activity_note(before: tuple[int, int, int, int], after: tuple[int, int, int, int]) -> str:
    d = [a - b for a, b in zip(after, before, strict=True)]
    return (f"server meanwhile: {d[0]} checkpoint(s) writing {d[1]} buffers, "
            f"{d[2]} autovacuum/analyze runs, {d[3] / 2**20:.0f} MiB WAL")


def cpu_times() -> list[int]:
    """This machine's CPU time counters (/proc/stat): the lab's containers share its kernel, so
    they cover the bench, PgBouncer, PostgreSQL and whatever else runs here."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def cpu_note(before: list[int], after: list[int]) -> str:
    """Where the cores' time went during a step: a tail that grows while the machine is not
    busy is the server's; one that grows with steal (the hypervisor gave the cores to another
    guest) or with other work is the machine's."""
    d = [a - b for a, b in zip(after, before, strict=True)]
    total = sum(d) or 1
    user, nice, system, idle, iowait, irq, softirq, steal = (100 * v / total for v in d)
    return (f"cores: {user + nice:.0f} % user, {system + irq + softirq:.0f} % system, "
            f"{iowait:.0f} % iowait, {steal:.0f} % steal, {idle:.0f} % idle")


def meanwhile(t: Target) -> Callable[[], str]:
    """Starts counting; the call it returns says what the server did since (activity_note)
    and where this machine's cores went (cpu_note)."""
    before, cpu = activity(t), cpu_times()
    return lambda: f"    {activity_note(before, activity(t))}; {cpu_note(cpu, cpu_times())}"


PARTITIONS = ("agent_heartbeats", "performance_metrics", "system_events")
# Today's partition by the name bgdb_partition_premake gives it (sql/migrations/0002:
# <table>_pYYYYMMDD, days in UTC).
TODAYS_PARTITION_SQL = ("SELECT to_regclass('public.{table}_p' || "
                        "to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD'))")


def partition_mix(t: Target, directory: Path) -> Path:
    """bench/write_mix.pgbench with each parent replaced by its partition for today: the same
    rows, indexes, foreign keys and triggers, without the routing (a file in `directory`)."""
    mix = MIX.read_text()
    for table in PARTITIONS:
        part = sql(t, TODAYS_PARTITION_SQL.format(table=table))[0][0]
        if not part:
            raise SystemExit(f"{table} has no partition for today (UTC)")
        mix = mix.replace(f"INSERT INTO {table} ", f"INSERT INTO {part} ")
    out = directory / "write_mix_partitions.pgbench"
    out.write_text(mix)
    return out


def pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def abba(rounds: int, name: str, goal: float, a: Callable[[], Run], b: Callable[[], Run],
         t: Target | None = None) -> None:
    """`rounds` x A B B A (drift within a round cancels): each round's ratio A / B, then the
    median and the spread of the rounds. With `t`, what the server did meanwhile under each
    run (a checkpoint or an autovacuum landing in one side's run is what skews a pair)."""
    ratios = []
    for i in range(rounds):
        runs = []
        for side in (a, b, b, a):
            note = meanwhile(t) if t else None
            runs.append(side())
            print(runs[-1].line(), flush=True)
            if note:
                print(note(), flush=True)
        first, second = runs[0].rows + runs[3].rows, runs[1].rows + runs[2].rows
        ratios.append(first / second if second else 0.0)
        print(f"  round {i + 1}: {name} = {ratios[-1]:.2f}x", flush=True)
    ratios.sort()
    print(f"  => {name} = {statistics.median(ratios):.2f}x median of {rounds} round(s)"
          f" (min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x; goal >= {goal:.2f})", flush=True)


# --- the fleet: agents x pool size client connections through PgBouncer ---

async def fleet(dsn: str, agents: int, pool: int, seconds: int, speedup: float) -> str:
    password = secrets.password("bg_agents_user", env="POSTGRESQL_PASSWORD")
    handshakes = asyncio.Semaphore(50)
    refused: list[str] = []
    errors: list[str] = []
    ops = 0
    conns: list[list[psycopg.AsyncConnection]] = [[] for _ in range(agents)]

    async def connect(a: int) -> None:
        async with handshakes:
            try:
                conns[a].append(await psycopg.AsyncConnection.connect(
                    dsn, password=password, autocommit=True, prepare_threshold=None,
                    connect_timeout=60))
            except psycopg.Error as exc:
                refused.append(str(exc).strip().splitlines()[-1])

    started = time.monotonic()
    await asyncio.gather(*(connect(a) for a in range(agents) for _ in range(pool)))
    connected = time.monotonic() - started

    async def agent(a: int, end: float) -> None:
        nonlocal ops
        rng = random.Random(a)
        every = {"heartbeat": 60 / speedup, "metric": 30 / speedup}
        due = {k: time.monotonic() + rng.uniform(0, v) for k, v in every.items()}
        while conns[a]:
            kind = min(due, key=due.__getitem__)
            await asyncio.sleep(max(0.0, due[kind] - time.monotonic()))
            if time.monotonic() >= end:
                return
            due[kind] += every[kind]
            conn = rng.choice(conns[a])
            try:
                if kind == "heartbeat":
                    await conn.execute(
                        "INSERT INTO agent_heartbeats (agent_id, timestamp, state, error_count,"
                        " metrics) VALUES (%s, now(), 'running', 0, '{}')", (f"{PREFIX}{a}",))
                else:
                    await conn.execute("INSERT INTO performance_metrics (agent_id, metric_name,"
                                       " value) VALUES (%s, %s, %s)",
                                       (f"{PREFIX}{a}", "cpu_usage", 25.5))
                ops += 1
            except psycopg.Error as exc:
                errors.append(str(exc).strip().splitlines()[-1])

    end = time.monotonic() + seconds
    await asyncio.gather(*(agent(a, end) for a in range(agents)))
    opened = sum(len(c) for c in conns)
    for c in (c for cs in conns for c in cs):
        await c.close()
    first = f"; first: {(refused or errors)[0]}" if refused or errors else ""
    return (f"  {agents} agents x {pool} = {agents * pool} connections: {opened} open "
            f"({len(refused)} refused) in {connected:.0f} s; {ops} writes in {seconds} s at "
            f"{speedup:g}x time ({ops / seconds:.0f}/s), {len(errors)} errors{first}")


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- main ---

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", help="inventory name or address (default: the primary)")
    ap.add_argument("--only", default="tax,pooled,batched,open,fleet")
    ap.add_argument("--seconds", type=int, default=20, help="per pgbench run")
    ap.add_argument("--rounds", type=int, default=1, help="ABBA rounds of tax and pooled")
    ap.add_argument("--fill", type=int, default=10_000_000, help="history rows per side")
    ap.add_argument("--fleet-agents", type=int, default=1000)
    ap.add_argument("--fleet-seconds", type=int, default=30)
    ap.add_argument("--fleet-speedup", type=float, default=10.0)
    ap.add_argument("--cleanup", action="store_true", help="remove the bench's rows and exit")
    ap.add_argument("--confirm-existing-data", action="store_true")
    args = ap.parse_args()
    only = set(args.only.split(","))
    inv = targets.select([args.host] if args.host else [], default_primary=True)[0]
    t = targets.reach(inv)
    if args.cleanup:
        cleanup(t)
        return 0
    app = app_settings(Data(inv.data))
    bouncer_port = pgbouncer_port(Data(inv.data))
    direct = conninfo(inv.address, t.pg.port, app.user, app.database, None)
    pooled = conninfo(inv.address, bouncer_port, app.user, app.database, None)
    prepared = t.host.run("grep -Eq '^max_prepared_statements *= *[1-9]' "
                          "/etc/pgbouncer/pgbouncer.ini").rc == 0
    bouncer_mode = "prepared" if prepared else "simple"
    print(f"{inv.name} ({inv.address}): {t.value('SELECT version()').split(' on ')[0]}, "
          f"{t.host.run('pgbouncer --version').stdout.splitlines()[0]}, "
          f"{t.facts.cpus} CPUs; this machine: {os.cpu_count()} CPUs, {load()}", flush=True)
    setup(t, app.user, args.fill, args.confirm_existing_data)
    n = args.seconds
    ours_dsn = conninfo(inv.address, t.pg.port, app.user, app.database, "public")
    plain_dsn = conninfo(inv.address, t.pg.port, app.user, app.database, PLAIN)
    if "tax" in only:
        print("schema tax: write mix, direct TLS, prepared, 64 clients (ours / seed's plain)")
        abba(args.rounds, "ours / plain", 0.95,
             lambda: pgbench("ours", ours_dsn, clients=64, seconds=n, mode="prepared"),
             lambda: pgbench("seed's plain tables", plain_dsn, clients=64, seconds=n,
                             mode="prepared"), t)
    if "routing" in only:
        print("partition routing: write mix, direct TLS, prepared, 64 clients (into our parents / "
              "into today's partitions)")
        with tempfile.TemporaryDirectory(prefix="bgdb-bench-") as tmp:
            direct_mix = partition_mix(t, Path(tmp))
            abba(args.rounds, "parents / partitions", 0.95,
                 lambda: pgbench("into the parents (routed)", ours_dsn, clients=64, seconds=n,
                                 mode="prepared"),
                 lambda: pgbench("into today's partitions", ours_dsn, clients=64, seconds=n,
                                 mode="prepared", script=direct_mix), t)
    if "pooled" in only:
        print(f"pooled path: write mix, 64 clients (PgBouncer: {bouncer_mode} protocol)")
        abba(args.rounds, "PgBouncer / direct", 0.90,
             lambda: pgbench(f"PgBouncer TLS, {bouncer_mode}", pooled, clients=64, seconds=n,
                             mode=bouncer_mode),
             lambda: pgbench("direct TLS, prepared", direct, clients=64, seconds=n,
                             mode="prepared"))
    if "batched" in only:
        # The client's own path without prepared statements through PgBouncer (the issue's
        # "best path where not"): metrics ten to a statement, as AgentClient.flush_metrics
        # sends them, in the extended protocol with unnamed statements (psycopg
        # prepare_threshold=None, what background_agents uses); compared in rows/s with the
        # single-row mix direct and prepared.
        print("batched metrics: PgBouncer TLS, extended protocol, 64 clients, metrics 10 per "
              "statement (rows/s) / direct TLS prepared single-row mix")
        abba(args.rounds, "PgBouncer batched / direct single-row", 0.90,
             lambda: pgbench("PgBouncer TLS, extended, metrics batched", pooled, clients=64,
                             seconds=n, mode="extended", script=MIX_BATCHED,
                             rows_per_tx=ROWS_PER_TX_BATCHED),
             lambda: pgbench("direct TLS, prepared", direct, clients=64, seconds=n,
                             mode="prepared"))
    if "open" in only:
        print(f"open loop: pgbench -R, 256 clients, PgBouncer TLS ({bouncer_mode})")
        best = None
        for rate in OPEN_RATES:
            note = meanwhile(t)
            r = pgbench(f"offered {rate} TPS", pooled, clients=256, seconds=n, mode=bouncer_mode,
                        rate=rate)
            print(r.line(), flush=True)
            print(note(), flush=True)
            if r.p95 < P95_GOAL_MS and not r.failed:
                best = rate
            elif rate >= 4000:
                break
        print(f"  => highest offered rate with p95 < {P95_GOAL_MS:g} ms: {best or 'none'} TPS "
              f"(goal: 4000 with 0 failures)", flush=True)
    if "fleet" in only:
        raise_nofile()
        print(f"fleet: PgBouncer TLS, seed pool size {app.pool_size}, {load()}", flush=True)
        pooled_uri = pooled.replace(f" user={app.user}", f" user={shlex.quote(app.user)}")
        print(asyncio.run(fleet(pooled_uri, args.fleet_agents, app.pool_size,
                                args.fleet_seconds, args.fleet_speedup)), flush=True)
        print(f"  ({load()} after)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
