"""Migrate a generated 1M-row legacy shared_state.db into PostgreSQL; print rows/s and peak memory.

    python bench/sqlite_migration.py --dsn ADMIN_DSN [--rows 1000000] [--batch-size 10000]
                                     [--validate] [--tracemalloc] [--keep]

ADMIN_DSN: a superuser on the target server (e.g. the sandbox primary, or a local cluster). The
bench creates a scratch database, applies the schema (bgdb.migrate), writes the SQLite file
(--rows heartbeats + a tenth as many metrics + a hundredth as many events, 100 agents, every
timestamp form; bgdb.sqlite_migration.sample), runs bgdb-migrate-sqlite in a child process and
prints its throughput, its peak RSS (getrusage) and, with --tracemalloc, the peak of Python
allocations (tracemalloc slows the run down ~2x: its figures are memory, not speed). The scratch
database is dropped afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bgdb import migrate as schema  # noqa: E402
from bgdb.sqlite_migration import sample, validate  # noqa: E402

CHILD = """
import json, pathlib, resource, sys, time, tracemalloc
trace = sys.argv[1] == "1"
if trace:
    tracemalloc.start()
from bgdb.sqlite_migration import migrate
opts = json.loads(sys.argv[2])
opts["source"] = pathlib.Path(opts["source"])
t = time.monotonic()
report = migrate.Migration(migrate.Options(**opts)).run()
out = {"seconds": time.monotonic() - t,
       "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
       "tables": [(r.target, r.copied, r.seconds) for r in report.tables]}
if trace:
    out["traced_peak"] = tracemalloc.get_traced_memory()[1]
print(json.dumps(out))
"""


def child(source: Path, dsn: str, batch_size: int, trace: bool) -> dict[str, Any]:
    """Run the migration in a fresh process, so its peak RSS is the migration's own."""
    opts = {"source": str(source), "target": dsn, "batch_size": batch_size, "backup": False,
            "progress": False}
    proc = subprocess.run([sys.executable, "-c", CHILD, "1" if trace else "0", json.dumps(opts)],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(f"migration failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def scratch(admin_dsn: str) -> tuple[str, str]:
    name = f"bgdb_bench_sqlite_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    params["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    with schema.connect(dsn) as conn:
        schema.apply(conn)
    return name, dsn


def drop(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dsn", required=True, help="superuser DSN on the target server")
    ap.add_argument("--rows", type=int, default=1_000_000, help="heartbeats (default 1M)")
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--validate", action="store_true", help="also time the validation")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="second run under tracemalloc: peak Python allocations")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database(s)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bgdb-bench-sqlite-") as tmp:
        db = Path(tmp) / "shared_state.db"
        t = time.monotonic()
        counts = sample.generate(db, heartbeats=args.rows)
        total = sum(counts.values())
        print(f"sqlite file: {total:,} rows, {db.stat().st_size / 2**20:.0f} MiB,"
              f" written in {time.monotonic() - t:.1f} s")
        runs = [False] + ([True] if args.tracemalloc else [])
        for trace in runs:
            name, dsn = scratch(args.dsn)
            try:
                result = child(db, dsn, args.batch_size, trace)
                seconds = float(result["seconds"])
                line = (f"{'under tracemalloc' if trace else 'migration'}: {total:,} rows in"
                        f" {seconds:.1f} s = {total / seconds:,.0f} rows/s (batch"
                        f" {args.batch_size:,}); peak RSS {result['peak_rss_kb'] / 1024:.0f} MiB")
                if trace:
                    line += f"; peak traced Python memory {result['traced_peak'] / 2**20:.1f} MiB"
                print(line)
                if not trace:
                    for table, copied, secs in result["tables"]:
                        rate = copied / secs if secs else 0.0
                        print(f"  {table:<22}{copied:>10,} rows {secs:7.1f} s"
                              f" {rate:>10,.0f} rows/s")
                if args.validate and not trace:
                    t = time.monotonic()
                    res = validate.Validation(db, dsn, progress=False).run()
                    took = time.monotonic() - t
                    print(f"validation: {'PASS' if res.ok else 'FAIL'} in {took:.1f} s"
                          f" ({2 * total / took:,.0f} rows/s, both sides)")
            finally:
                if args.keep:
                    print(f"kept database {name}")
                else:
                    drop(args.dsn, name)


if __name__ == "__main__":
    main()
