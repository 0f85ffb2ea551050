"""EXPLAIN and time each query of sql/monitoring/ against a DSN; prints one line per query.

    python bench/monitoring_queries.py --dsn DSN [--runs 5] [--plans]

Per query: rows returned, median and max time over --runs executions, the scan nodes of its plan
(from EXPLAIN (ANALYZE, FORMAT JSON)), and "SEQ SCAN" naming any table of more than 10,000 rows
read sequentially - the monitoring queries must stay index-backed on 10 M heartbeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

SQL_DIR = Path(__file__).resolve().parent.parent / "sql" / "monitoring"
BIG_TABLE_ROWS = 10_000


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--plans", action="store_true", help="also print each text plan")
    args = ap.parse_args()

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        big = {
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples > %s",
                [BIG_TABLE_ROWS],
            )
        }
        print(f"{'query':<22} {'rows':>6} {'median ms':>10} {'max ms':>8}  plan")
        for path in sorted(SQL_DIR.glob("*.sql")):
            query = path.read_text().strip().rstrip(";")
            row = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}").fetchone()
            assert row is not None
            plan = row[0][0]["Plan"]
            scans: Counter[str] = Counter()
            seq_big: set[str] = set()
            for node in nodes(plan):
                kind = node["Node Type"]
                if "Scan" in kind:
                    scans[kind] += int(node.get("Actual Loops", 1))
                    if kind == "Seq Scan" and node.get("Relation Name") in big:
                        seq_big.add(node["Relation Name"])
            times = []
            rows = 0
            for _ in range(args.runs):
                start = time.perf_counter()
                rows = len(conn.execute(query).fetchall())
                times.append((time.perf_counter() - start) * 1000)
            summary = ", ".join(f"{k} x{v}" for k, v in scans.most_common())
            if seq_big:
                summary += "  SEQ SCAN on " + ", ".join(sorted(seq_big))
            print(f"{path.stem:<22} {rows:>6} {statistics.median(times):>10.1f} "
                  f"{max(times):>8.1f}  {summary}")
            if args.plans:
                for (line,) in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}"):
                    print("    " + line)


if __name__ == "__main__":
    main()
