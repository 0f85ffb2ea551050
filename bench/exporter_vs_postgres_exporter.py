"""Scrape the bgdb exporter and Debian's prometheus-postgres-exporter side by side on one host.

    python bench/exporter_vs_postgres_exporter.py [--lab NAME] [--scale 0.1] [--repeat 30]
        [--pause 1] [--skip-fill] [--keep]

Needs a deployed sandbox lab (`python -m sandbox up 3 --lab L && BGDB_LAB=L make deploy`); on
its primary it:

1. fills the agents database with bench/gen_heartbeats.py at --scale of the issue's figures
   (1.0 = 10 M heartbeats, 5 M performance metrics, 1 M system events, over 30 days) for
   --agents agents (1,000, not scaled), unless --skip-fill;
2. installs prometheus-postgres-exporter (Debian 12: 0.11.1) with its default collectors,
   logged in as the same bg_agents_monitor role over the same local socket, listening on
   127.0.0.1:9187 only;
3. on the host itself (the same client, no network in between), GETs both /metrics endpoints
   --repeat times after one warm-up each, alternating which goes first, --pause s between
   rounds (both exporters compute on request: a GET is one full scrape);
4. prints each one's median/p95/max HTTP scrape time, its own reported scrape duration, the
   samples and bytes served, whether the scrapes were complete (query errors or skipped
   queries; postgres_exporter's last_scrape_error), and the ratio of the medians.

postgres_exporter is stopped and disabled afterwards (--keep leaves it running).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from deploy import exporter, secrets  # noqa: E402
from deploy.hostdata import InventoryHost, load_inventory  # noqa: E402
from deploy.settings import Data, exporter_settings, postgres_settings  # noqa: E402

FULL = {"heartbeats": 10_000_000, "metrics": 5_000_000, "events": 1_000_000}
THEIRS = "http://127.0.0.1:9187/metrics"
THEIRS_UNIT = "prometheus-postgres-exporter"
# Metrics read from every scrape body (unlabelled ones are taken as is, labelled ones summed).
OURS_FIGURES = ("bgdb_up", "bgdb_exporter_scrape_duration_seconds",
                "bgdb_exporter_query_errors_total", "bgdb_exporter_queries_skipped_total")
THEIRS_FIGURES = ("pg_up", "pg_exporter_last_scrape_duration_seconds",
                  "pg_exporter_last_scrape_error")
OURS_COMPLETE = ("bgdb_up", "bgdb_exporter_query_errors_total",
                 "bgdb_exporter_queries_skipped_total")
THEIRS_COMPLETE = ("pg_up", "pg_exporter_last_scrape_error")

# Runs on the host with its python3: argv = repeat pause url1 url2; prints one JSON document.
TIMER = r"""
import json, os, sys, time, urllib.request
repeat, pause, urls, names = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:5], sys.argv[5:]
def scrape(url):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        body = resp.read().decode()
    took = time.perf_counter() - t0
    figures, queries, samples = {}, {}, 0
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        samples += 1
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            figures[name] = figures.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        if line.startswith('bgdb_exporter_query_duration_seconds{query="'):
            queries[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return {"seconds": took, "bytes": len(body), "samples": samples, "figures": figures,
            "queries": queries}
def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]
out = {"load": [load()], "cpus": os.cpu_count()}
out.update({u: {"warmup": scrape(u), "runs": []} for u in urls})
for i in range(repeat):
    for u in (urls if i % 2 == 0 else urls[::-1]):
        out[u]["runs"].append(scrape(u))
    time.sleep(pause)
out["load"].append(load())
print(json.dumps(out))
"""


def primary(lab: str) -> InventoryHost:
    os.environ["BGDB_LAB"] = lab
    for h in load_inventory():
        if "postgres_primary" in h.groups:
            return h
    raise SystemExit(f"lab {lab}: no postgres_primary host")


def ssh(h: InventoryHost, command: str, stdin: str | None = None,
        timeout: float = 1800) -> str:
    d = h.data
    cmd = ["ssh", "-i", str(d["ssh_key"]), "-o", "BatchMode=yes", "-o",
           f"UserKnownHostsFile={d['ssh_known_hosts_file']}", "-o", "StrictHostKeyChecking=yes",
           f"{d.get('ssh_user', 'root')}@{h.address}", command]
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"{h.name}: {command[:120]!r} failed: {out.stderr.strip()[-2000:]}")
    return out.stdout


def admin_dsn(h: InventoryHost, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(
        host=h.address, dbname=dbname, user="bgdb_admin",
        password=secrets.password("bgdb_admin", generate=False), sslmode="verify-full",
        sslrootcert=str(secrets.secrets_dir() / "ca" / "ca.crt"), connect_timeout=10)


def fill(h: InventoryHost, args: argparse.Namespace) -> None:
    rows = {k: int(v * args.scale) for k, v in FULL.items()}
    print(f"filling {h.name}: {args.agents:,} agents, {rows['heartbeats']:,} heartbeats, "
          f"{rows['metrics']:,} metrics, {rows['events']:,} events (scale {args.scale})",
          flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, str(REPO / "bench" / "gen_heartbeats.py"),
                    "--dsn", admin_dsn(h, "background_agents"), "--agents", str(args.agents),
                    "--heartbeats", str(rows["heartbeats"]), "--metrics", str(rows["metrics"]),
                    "--events", str(rows["events"])], check=True)
    print(f"filled in {time.monotonic() - started:.0f} s", flush=True)


def database_contents(h: InventoryHost) -> str:
    with psycopg.connect(admin_dsn(h, "background_agents"), autocommit=True) as conn:
        agents = conn.execute("SELECT count(*) FROM agents").fetchone()
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()
                  for t in ("agent_heartbeats", "performance_metrics", "system_events")]
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                            ).fetchone()
    assert agents and size and all(counts)
    hb, pm, ev = (c[0] for c in counts if c)
    return (f"{agents[0]:,} agents, {hb:,} heartbeats, {pm:,} metrics, {ev:,} events, "
            f"database {size[0]}")


def install_postgres_exporter(h: InventoryHost, port: int, database: str) -> str:
    ssh(h, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        f"{THEIRS_UNIT} >/dev/null")
    dsn = (f"host=/var/run/postgresql port={port} dbname={database} user=bg_agents_monitor "
           f"password={secrets.password('bg_agents_monitor', generate=False)} sslmode=disable")
    env = (f"DATA_SOURCE_NAME='{dsn}'\n"
           "ARGS='--web.listen-address=127.0.0.1:9187'\n")
    ssh(h, f"umask 077 && cat > /etc/default/{THEIRS_UNIT} && systemctl enable -q {THEIRS_UNIT}"
        f" && systemctl restart {THEIRS_UNIT}", stdin=env)
    probe = (f"python3 -c \"import urllib.request; b = urllib.request.urlopen('{THEIRS}', "
             "timeout=30).read().decode(); print([l for l in b.splitlines() "
             "if l.startswith('pg_up ')][0])\"")
    for _ in range(30):
        try:
            if ssh(h, probe, timeout=60).strip() == "pg_up 1":
                break
        except SystemExit:
            pass
        time.sleep(1)
    else:
        raise SystemExit(f"postgres_exporter does not report pg_up 1:\n"
                         f"{ssh(h, f'journalctl -u {THEIRS_UNIT} -n 20 --no-pager')}")
    return ssh(h, f"dpkg-query -W -f='${{Version}}' {THEIRS_UNIT}").strip()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(label: str, result: dict[str, Any], duration_figure: str) -> float:
    runs = result["runs"]
    times = [r["seconds"] for r in runs]
    own = [r["figures"].get(duration_figure, float("nan")) for r in runs]
    last = runs[-1]
    print(f"{label}: {len(runs)} scrapes, {last['samples']} samples, {last['bytes']:,} bytes")
    print(f"  HTTP scrape  median {statistics.median(times) * 1000:8.1f} ms   "
          f"p95 {pct(times, 0.95) * 1000:8.1f} ms   max {max(times) * 1000:8.1f} ms   "
          f"(warm-up {result['warmup']['seconds'] * 1000:.1f} ms)")
    print(f"  own figure   median {statistics.median(own) * 1000:8.1f} ms   ({duration_figure})")
    return statistics.median(times)


def complete(result: dict[str, Any], names: tuple[str, ...]) -> str:
    first, last = result["warmup"]["figures"], result["runs"][-1]["figures"]
    parts = []
    for name in names:
        if name.endswith("_total"):
            parts.append(f"{name} +{last.get(name, 0) - first.get(name, 0):g}")
        else:
            parts.append(f"{name} {last.get(name, float('nan')):g}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab", default=os.environ.get("BGDB_LAB", "sbx"))
    ap.add_argument("--scale", type=float, default=0.1,
                    help="share of 10 M heartbeats / 5 M metrics / 1 M events (1.0 = the issue's)")
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between rounds")
    ap.add_argument("--skip-fill", action="store_true", help="the database is filled already")
    ap.add_argument("--keep", action="store_true", help="leave postgres_exporter running")
    args = ap.parse_args(argv)

    h = primary(args.lab)
    data = Data(h.data)
    pg = postgres_settings(data)
    ex = exporter_settings(data, pg)
    if ex.tls or ex.basic_auth_user:
        raise SystemExit("this bench scrapes plain http: deploy with exporter_tls and "
                         "exporter_basic_auth_user off")
    if not args.skip_fill:
        fill(h, args)
    print(f"database: {database_contents(h)}", flush=True)
    version = install_postgres_exporter(h, pg.port, "background_agents")
    ours = f"http://{exporter.listen_address(ex, h.address)}:{ex.port}/metrics"
    try:
        print(f"scraping {ours} and {THEIRS} on {h.name}, {args.repeat} rounds ...", flush=True)
        raw = ssh(h, shlex.join(["python3", "-", str(args.repeat), str(args.pause), ours,
                                 THEIRS, *OURS_FIGURES, *THEIRS_FIGURES]), stdin=TIMER)
        results = json.loads(raw)
    finally:
        if not args.keep:
            ssh(h, f"systemctl disable -q --now {THEIRS_UNIT}")
    print()
    mine = summary("bgdb exporter", results[ours], "bgdb_exporter_scrape_duration_seconds")
    print(f"  complete:    {complete(results[ours], OURS_COMPLETE)}")
    per_query: dict[str, list[float]] = {}
    for run in results[ours]["runs"]:
        for name, seconds in run["queries"].items():
            per_query.setdefault(name, []).append(seconds)
    top = sorted(per_query.items(), key=lambda kv: -statistics.median(kv[1]))[:6]
    print("  costliest queries (median): " + ", ".join(
        f"{name} {statistics.median(v) * 1000:.1f} ms" for name, v in top))
    theirs = summary(f"prometheus-postgres-exporter {version} (default collectors)",
                     results[THEIRS], "pg_exporter_last_scrape_duration_seconds")
    print(f"  complete:    {complete(results[THEIRS], THEIRS_COMPLETE)}")
    print(f"\nmedian ratio postgres_exporter / bgdb = {theirs / mine:.2f}  (host: "
          f"{results['cpus']} CPUs, load average {results['load'][0]} before, "
          f"{results['load'][1]} after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
