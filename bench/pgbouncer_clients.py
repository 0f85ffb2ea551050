"""Many concurrent clients through PgBouncer versus straight to PostgreSQL.

    python bench/pgbouncer_clients.py --host 10.231.0.11 [--clients 500] [--queries 5] \
        [--port 6432] [--compare-port 5432] [--sleep-ms 5]

Each client opens its own TLS connection (verify-full, the bundle's CA) as the application role
with the password from the secrets directory, waits until every client is connected, then runs
`--queries` short queries (`pg_sleep(--sleep-ms)`). Prints, per port: clients served, connect
time (median, p95), query latency (median, p95, max) and wall time. Against PostgreSQL directly,
clients above the role's connection limit fail: that is the point of the comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from deploy import secrets  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


async def run(args: argparse.Namespace, port: int) -> str:
    conninfo = psycopg.conninfo.make_conninfo(
        host=args.host, port=port, dbname=args.database, user=args.user,
        password=secrets.password(args.user, env="POSTGRESQL_PASSWORD"), sslmode="verify-full",
        sslrootcert=str(secrets.secrets_dir() / "ca/ca.crt"), connect_timeout=60)
    handshakes = asyncio.Semaphore(50)
    all_open = asyncio.Event()
    connects: list[float] = []
    latencies: list[float] = []
    opened = failed = 0

    async def client() -> None:
        nonlocal opened, failed
        conn = None
        try:
            async with handshakes:
                started = time.perf_counter()
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True,
                                                             prepare_threshold=None)
                connects.append(time.perf_counter() - started)
                opened += 1
        except psycopg.Error:
            failed += 1
        if opened + failed == args.clients:
            all_open.set()  # every client has tried: the connected ones start together
        if conn is None:
            return
        async with conn:
            await all_open.wait()
            for _ in range(args.queries):
                started = time.perf_counter()
                await conn.execute("SELECT pg_sleep(%s)", (args.sleep_ms / 1000,))
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    wall = time.perf_counter() - started
    ms = 1000
    return (f"port {port}: {opened}/{args.clients} clients connected ({failed} refused), "
            f"{len(latencies)} queries in {wall:.1f}s; connect median "
            f"{statistics.median(connects or [0]) * ms:.0f} ms p95 {pct(connects, 0.95) * ms:.0f} "
            f"ms; query median {statistics.median(latencies or [0]) * ms:.0f} ms p95 "
            f"{pct(latencies, 0.95) * ms:.0f} ms max {max(latencies or [0]) * ms:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=6432)
    parser.add_argument("--compare-port", type=int, default=None,
                        help="also run against this port (e.g. 5432, PostgreSQL directly)")
    parser.add_argument("--database", default="background_agents")
    parser.add_argument("--user", default="bg_agents_user")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--sleep-ms", type=float, default=5.0)
    args = parser.parse_args()
    for port in [args.port] + ([args.compare_port] if args.compare_port else []):
        print(asyncio.run(run(args, port)), flush=True)


if __name__ == "__main__":
    main()
