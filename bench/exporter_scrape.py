"""Time full scrapes of the bgdb exporter against a database (and, optionally, another exporter).

    python bench/exporter_scrape.py --dsn "host=... dbname=... user=bg_agents_monitor" \
        [--pgbouncer-dsn ...] [--repeat 20] [--compare-url http://db1:9187/metrics]

A scrape is what Prometheus pays for: every query of the table plus rendering the text
exposition (collector.exposition(), what the endpoint serves), on already open connections
(the first, warm-up scrape opens them and takes the pg_stat_statements baseline; it is printed
apart). Prints the total per scrape (median, p95, max), each query's median, the number of
samples and the response size.
--compare-url times HTTP GETs of another exporter's endpoint the same way (e.g. Debian's
prometheus-postgres-exporter on :9187), for a side-by-side figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporters.collector import BgdbCollector  # noqa: E402
from exporters.config import build_config  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def bench_bgdb(args: argparse.Namespace) -> list[float]:
    settings: dict[str, object] = {"dsn": args.dsn, "max_agents": args.max_agents,
                                   "statement_timeout_seconds": args.statement_timeout}
    if args.pgbouncer_dsn:
        settings["pgbouncer_dsn"] = args.pgbouncer_dsn
    collector = BgdbCollector(build_config(settings))
    try:
        t0 = time.perf_counter()
        body = collector.exposition()
        warm = time.perf_counter() - t0
        totals: list[float] = []
        per_query: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            body = collector.exposition()
            totals.append(time.perf_counter() - t0)
            for name, seconds in collector.last_query_durations.items():
                per_query.setdefault(name, []).append(seconds)
        lines = [ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")]
        up = next((ln for ln in lines if ln.startswith("bgdb_up ")), "bgdb_up ?")
        print(f"bgdb exporter: {args.repeat} scrapes, {len(lines)} samples, {len(body)} bytes, "
              f"{up}")
        print(f"  first scrape (connect + baseline) {ms(warm)}")
        print(f"  full scrape  median {ms(statistics.median(totals))}  p95 {ms(pct(totals, 0.95))}"
              f"  max {ms(max(totals))}")
        print("  per query (median):")
        for name, values in sorted(per_query.items(), key=lambda kv: -statistics.median(kv[1])):
            print(f"    {name:22s} {ms(statistics.median(values))}")
        errors = [ln for ln in lines
                  if ln.startswith("bgdb_exporter_query_errors_total") and not ln.endswith(" 0.0")]
        if errors:
            print("  query errors:", *errors, sep="\n    ")
        return totals
    finally:
        collector.close()


def bench_url(url: str, repeat: int) -> list[float]:
    def fetch() -> bytes:
        with urllib.request.urlopen(url, timeout=60) as resp:
            data: bytes = resp.read()
            return data

    body = fetch()
    totals = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        body = fetch()
        totals.append(time.perf_counter() - t0)
    samples = sum(1 for ln in body.decode().splitlines() if ln and not ln.startswith("#"))
    print(f"{url}: {repeat} scrapes, {samples} samples, {len(body)} bytes")
    print(f"  full scrape  median {ms(statistics.median(totals))}  p95 {ms(pct(totals, 0.95))}"
          f"  max {ms(max(totals))}")
    return totals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", required=True, help="libpq DSN as the exporter uses it")
    ap.add_argument("--pgbouncer-dsn", help="PgBouncer admin console DSN (optional)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--max-agents", type=int, default=200)
    ap.add_argument("--statement-timeout", type=float, default=2.0)
    ap.add_argument("--compare-url", action="append", default=[],
                    help="another exporter's /metrics URL to time the same way (repeatable)")
    args = ap.parse_args(argv)
    ours = bench_bgdb(args)
    for url in args.compare_url:
        theirs = bench_url(url, args.repeat)
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(f"  median ratio {url} / bgdb = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
