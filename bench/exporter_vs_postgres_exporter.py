"""Scrape the bgdb exporter and Debian's prometheus-postgres-exporter side by side on one host.

    python bench/exporter_vs_postgres_exporter.py [--lab NAME] [--scale 1.0] [--repeat 30]
        [--pause 1] [--skip-fill] [--keep]

Needs a deployed sandbox lab (`python -m sandbox up 1 --lab L && BGDB_LAB=L python -m bgdb
deploy`); on its primary it:

1. fills the agents database with bench/gen_heartbeats.py at --scale of the issue's figures
   (1.0 = 10 M heartbeats, 5 M performance metrics, 1 M events, over 30 days, with a live last
   hour where every running agent beats each interval) for --agents agents (1,000, not
   scaled), unless --skip-fill;
2. installs prometheus-postgres-exporter (Debian 12: 0.11.1) with its default collectors,
   logged in as the same bg_agents_monitor role over the same local socket, listening on
   127.0.0.1:9187 only;
3. on the host itself (the same client, no network in between) restarts both exporters, times
   one cold GET of each, one warm-up each, then --repeat rounds of one GET each, alternating
   which goes first, --pause s between rounds (both exporters compute on request: a GET is one
   full scrape). Between rounds the agents keep beating (TOPUP_SQL, untimed);
4. prints for each: median/p95/max HTTP scrape time, its own reported scrape duration, the
   PostgreSQL CPU time per scrape (all postgres processes, /proc, around each GET: the cost on
   the database server, the fairer "cheaper" measure), pg_stat_statements execution time per
   scrape, the exporter process's own CPU, the cold scrape, samples and bytes, whether the
   scrapes were complete (query errors or skipped queries; postgres_exporter's
   last_scrape_error), our costliest queries, and the ratios postgres_exporter / bgdb.

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

from deploy import exporter, postgres, secrets  # noqa: E402
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

# Runs on the host with its python3 as root: argv = repeat pause port topup_sql url1 url2
# unit1 unit2 figure-names...; prints one JSON document. Around every GET it reads the CPU time
# (ns) of all PostgreSQL processes and of the monitor role's backends, which serve only the
# exporters (live ones from /proc/<pid>/task/*/schedstat, exited ones from the postmaster's
# cutime + cstime), and of each exporter's process, and between scrapes
# pg_stat_statements' total_exec_time of the monitor role (read by psql as postgres, whose own
# statements are not counted; nothing else runs as the monitor role). Between rounds it runs
# topup_sql (as postgres), which keeps the agents beating; none of that is inside a timing.
TIMER = r"""
import json, os, socket, subprocess, sys, time, urllib.request
repeat, pause, port, topup = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
urls, units, names = sys.argv[5:7], sys.argv[7:9], sys.argv[9:]
TICK = 1e9 / os.sysconf("SC_CLK_TCK")
MONITOR_PIDS = set()
def psql(sql):
    out = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t",
                          "-p", port, "-d", "background_agents", "-v", "ON_ERROR_STOP=1",
                          "-c", sql], check=True, capture_output=True, text=True).stdout.strip()
    time.sleep(0.05)  # the postmaster reaps psql's backend before the next GET
    return out
def exec_ms():
    # (execution, planning) ms of the monitor role; planning is 0 unless track_planning is on.
    out = psql("SELECT coalesce(sum(total_exec_time), 0), coalesce(sum(total_plan_time), 0)"
               " FROM pg_stat_statements WHERE userid = 'bg_agents_monitor'::regrole")
    return tuple(float(v) for v in out.split("|"))
def threads_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total
def postgres_ns():
    # (all PostgreSQL processes + exited ones, the monitor role's live backends); a backend's
    # process title names its role ("postgres: 15/main: bg_agents_monitor background_agents ...").
    # Both exporters keep their connections (MONITOR_PIDS checks it), so no monitor backend
    # exits during a GET; psql's exited backends would otherwise count against an exporter.
    total = monitor = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            if not stat.split(" (", 1)[1].startswith("postgres)"):
                continue
            fields = stat.rsplit(")", 1)[1].split()
            ns = threads_ns(pid)
            total += ns
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b" bg_agents_monitor " in f.read():
                    monitor += ns
                    MONITOR_PIDS.add(pid)
            with open(f"/proc/{fields[1]}/comm") as f:
                if f.read().strip() != "postgres":  # the postmaster: its exited children
                    total += int((int(fields[13]) + int(fields[14])) * TICK)
        except (OSError, IndexError):
            pass
    return total, monitor
def main_pid(unit):
    return subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit],
                          check=True, capture_output=True, text=True).stdout.strip()
def wait_listening(url):
    host, port_ = url.split("/")[2].rsplit(":", 1)
    for _ in range(300):
        try:
            socket.create_connection((host, int(port_)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url}: nothing listening")
def process_ns(pid):
    # utime + stime of the whole process, exited threads included (an HTTP server may run each
    # request in a thread of its own), in clock ticks: summed over all rounds, not per GET.
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int((int(fields[11]) + int(fields[12])) * TICK)
def scrape(url, pid):
    (pg0, mon0) = postgres_ns()
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        body = resp.read().decode()
    took = time.perf_counter() - t0
    (pg1, mon1) = postgres_ns()
    pg_cpu, mon_cpu = pg1 - pg0, mon1 - mon0
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
            "queries": queries, "pg_cpu": pg_cpu / 1e9, "backend_cpu": mon_cpu / 1e9}
def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]
out = {"load": [load()], "cpus": os.cpu_count()}
psql(topup)
# Cold: both exporters restarted (new connections, empty caches); the first GET is timed apart.
subprocess.run(["systemctl", "restart", *units], check=True)
for u in urls:
    wait_listening(u)
pids = dict(zip(urls, (main_pid(u) for u in units)))
for u in urls:
    before = exec_ms()
    out[u] = {"cold": scrape(u, pids[u]), "runs": []}
    after = exec_ms()
    out[u]["cold"]["exec_ms"], out[u]["cold"]["plan_ms"] = (a - b for a, b in zip(after, before))
    out[u]["warmup"] = scrape(u, pids[u])
ex0 = {u: process_ns(pids[u]) for u in urls}
for i in range(repeat):
    time.sleep(pause)
    psql(topup)
    after = exec_ms()
    for u in (urls if i % 2 == 0 else urls[::-1]):
        before = after
        run = scrape(u, pids[u])
        after = exec_ms()
        run["exec_ms"], run["plan_ms"] = (a - b for a, b in zip(after, before))
        out[u]["runs"].append(run)
for u in urls:
    out[u]["exporter_cpu"] = (process_ns(pids[u]) - ex0[u]) / 1e9 / repeat
out["load"].append(load())
out["monitor_pids"] = len(MONITOR_PIDS)
print(json.dumps(out))
"""

# Between rounds: every running agent that is not one of the silent ones (bench/gen_heartbeats.py,
# SILENT) beats each interval up to now, and updates agents.last_heartbeat, as agents do;
# system_events keep coming at the fill's rate. Runs as postgres, outside the timings.
TOPUP_SQL = """
WITH beats AS (
    INSERT INTO agent_heartbeats (agent_id, timestamp, state, metrics, error_count)
    SELECT a.agent_id, t, 'running', jsonb_build_object('cpu_usage', 50, 'memory_mb', 400), 0
    FROM agents AS a
    CROSS JOIN LATERAL (
        SELECT max(h.timestamp) AS last FROM agent_heartbeats AS h
        WHERE h.agent_id = a.agent_id AND h.timestamp > now() - interval '1 day'
          AND h.timestamp <= now()) AS m
    CROSS JOIN LATERAL generate_series(m.last + make_interval(secs => {interval}), now(),
                                       make_interval(secs => {interval})) AS t
    WHERE a.state = 'running' AND right(a.agent_id, 5)::int % 50 <> 25
    RETURNING agent_id, timestamp
)
UPDATE agents AS a SET last_heartbeat = b.ts
FROM (SELECT agent_id, max(timestamp) AS ts FROM beats GROUP BY agent_id) AS b
WHERE b.agent_id = a.agent_id;
INSERT INTO system_events (event_type, severity, source, agent_id, event_data, timestamp)
SELECT (ARRAY['task_done', 'task_failed', 'restart'])[1 + n % 3],
       (ARRAY['INFO', 'ERROR', 'WARNING'])[1 + n % 3], 'bench',
       format('agent-%s', lpad((1 + n % {agents})::text, 5, '0')), '{{}}', t
FROM (SELECT max(timestamp) AS last FROM system_events
      WHERE timestamp > now() - interval '1 day' AND timestamp <= now()) AS m
CROSS JOIN LATERAL generate_series(m.last + make_interval(secs => {event_step}), now(),
                                   make_interval(secs => {event_step})) WITH ORDINALITY AS g (t, n);
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
    # The socket is 0770 to its group (CIS 2.6): the package's user joins it, as ours does.
    ssh(h, f"usermod -a -G {postgres.SOCKET_GROUP} prometheus && umask 077 && "
        f"cat > /etc/default/{THEIRS_UNIT} && systemctl enable -q {THEIRS_UNIT}"
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


def set_track_planning(h: InventoryHost, port: int, on: bool) -> None:
    """pg_stat_statements.track_planning on for the run (planning time per scrape: both
    exporters' statements are planned, ours once per connection, theirs at every scrape), or
    back to the deployed configuration (ALTER SYSTEM RESET: postgresql.auto.conf as before)."""
    sql = ("ALTER SYSTEM SET pg_stat_statements.track_planning = on" if on
           else "ALTER SYSTEM RESET pg_stat_statements.track_planning")
    ssh(h, shlex.join(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-p", str(port),
                       "-d", "background_agents", "-v", "ON_ERROR_STOP=1", "-c", sql,
                       "-c", "SELECT pg_reload_conf()"]) + " >/dev/null")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(label: str, result: dict[str, Any], duration_figure: str) -> dict[str, float]:
    """Print one exporter's figures; returns its medians (seconds) and means (CPU, exec)."""
    runs = result["runs"]
    times = [r["seconds"] for r in runs]
    own = [r["figures"].get(duration_figure, float("nan")) for r in runs]
    last, cold = runs[-1], result["cold"]
    n = len(runs)
    out = {"http": statistics.median(times),
           "pg_cpu": sum(r["pg_cpu"] for r in runs) / n,
           "backend_cpu": sum(r["backend_cpu"] for r in runs) / n,
           "exec": sum(r["exec_ms"] for r in runs) / n / 1000,
           "plan": sum(r["plan_ms"] for r in runs) / n / 1000,
           "exporter_cpu": result["exporter_cpu"]}
    print(f"{label}: {n} scrapes, {last['samples']} samples, {last['bytes']:,} bytes")
    print(f"  HTTP scrape        median {statistics.median(times) * 1000:7.1f} ms   "
          f"p95 {pct(times, 0.95) * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms")
    print(f"  own figure         median {statistics.median(own) * 1000:7.1f} ms   "
          f"({duration_figure})")
    print(f"  PostgreSQL CPU     mean {out['backend_cpu'] * 1000:7.1f} ms/scrape   median "
          f"{statistics.median(r['backend_cpu'] for r in runs) * 1000:7.1f} ms   "
          "(the exporter's backend: the cost on the database server)")
    print(f"  all postgres CPU   mean {out['pg_cpu'] * 1000:7.1f} ms/scrape   "
          "(every postgres process during the GET: background work too)")
    print(f"  pg_stat_statements mean {out['exec'] * 1000:7.1f} ms/scrape   "
          "(total_exec_time of the monitor role: execution only)")
    print(f"  planning           mean {out['plan'] * 1000:7.1f} ms/scrape   "
          f"(total_plan_time, track_planning on during the run; cold scrape "
          f"{cold['plan_ms']:.1f} ms)")
    print(f"  exporter CPU       mean {out['exporter_cpu'] * 1000:7.1f} ms/scrape   "
          "(the exporter's own process, on the same host; /proc ticks over all rounds)")
    print(f"  cold first scrape  {cold['seconds'] * 1000:7.1f} ms HTTP, "
          f"{cold['backend_cpu'] * 1000:.1f} ms PostgreSQL CPU, {cold['exec_ms']:.1f} ms exec "
          "(just restarted: new connection, empty caches)")
    return out


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
    ap.add_argument("--scale", type=float, default=1.0,
                    help="share of 10 M heartbeats / 5 M metrics / 1 M events (1.0 = the issue's)")
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between rounds")
    ap.add_argument("--skip-fill", action="store_true", help="the database is filled already")
    ap.add_argument("--keep", action="store_true", help="leave postgres_exporter running")
    ap.add_argument("--no-track-planning", dest="track_planning", action="store_false",
                    help="leave pg_stat_statements.track_planning alone (the run turns it on "
                    "to count planning time, and resets it afterwards)")
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
    topup = TOPUP_SQL.format(interval=ex.heartbeat_interval_seconds, agents=args.agents,
                             event_step=30 * 86400 / max(1, int(FULL["events"] * args.scale)))
    if args.track_planning:
        set_track_planning(h, pg.port, True)
    try:
        print(f"scraping {ours} and {THEIRS} on {h.name}, {args.repeat} rounds ...", flush=True)
        raw = ssh(h, shlex.join(["python3", "-", str(args.repeat), str(args.pause), str(pg.port),
                                 topup, ours, THEIRS, exporter.UNIT, THEIRS_UNIT,
                                 *OURS_FIGURES, *THEIRS_FIGURES]), stdin=TIMER)
        results = json.loads(raw)
    finally:
        if args.track_planning:
            set_track_planning(h, pg.port, False)
        if not args.keep:
            ssh(h, f"systemctl disable -q --now {THEIRS_UNIT}")
    print()
    mine = summary("bgdb exporter", results[ours], "bgdb_exporter_scrape_duration_seconds")
    print(f"  complete:          {complete(results[ours], OURS_COMPLETE)}")
    # A query's duration gauge keeps its last run's value: count it only when it changed (the
    # cached sizes run once per min_interval_seconds; their cold-scrape run is printed apart).
    per_query: dict[str, list[float]] = {}
    previous = results[ours]["warmup"]["queries"]
    for run in results[ours]["runs"]:
        for name, seconds in run["queries"].items():
            if seconds != previous.get(name):
                per_query.setdefault(name, []).append(seconds)
        previous = run["queries"]
    top = sorted(per_query.items(), key=lambda kv: -statistics.median(kv[1]))[:6]
    print("  costliest queries (median of bgdb_exporter_query_duration_seconds, wall): " +
          ", ".join(f"{name} {statistics.median(v) * 1000:.1f} ms" for name, v in top))
    cold_q = results[ours]["cold"]["queries"]
    cached = sorted(set(cold_q) - set(per_query))
    if cached:
        print("  not re-run (cached), cold scrape: " + ", ".join(
            f"{name} {cold_q[name] * 1000:.1f} ms" for name in cached))
    theirs = summary(f"prometheus-postgres-exporter {version} (default collectors)",
                     results[THEIRS], "pg_exporter_last_scrape_duration_seconds")
    print(f"  complete:          {complete(results[THEIRS], THEIRS_COMPLETE)}")
    def ratio(key: str) -> float:
        return theirs[key] / mine[key] if mine[key] else float("inf")

    print(f"\npostgres_exporter / bgdb: HTTP scrape median {ratio('http'):.2f}, "
          f"PostgreSQL CPU {ratio('backend_cpu'):.2f} (all postgres {ratio('pg_cpu'):.2f}), "
          f"exec time {ratio('exec'):.2f}, "
          f"exporter CPU {ratio('exporter_cpu'):.2f}  (> 1: bgdb is "
          f"cheaper; host: {results['cpus']} CPUs, load average {results['load'][0]} before, "
          f"{results['load'][1]} after; monitor-role backends seen: {results['monitor_pids']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
