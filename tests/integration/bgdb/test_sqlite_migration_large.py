"""A large file (the seed's tables) migrated with bounded memory, into its daily partitions,
and validated.

The file has BGDB_SQLITE_TEST_ROWS heartbeats (default 200,000, so that CI stays quick; run it
with 1000000 for the full-size check - bench/sqlite_migration.py measures that size) plus a
tenth as many metrics (one value in 50 NULL) and a hundredth as many events, every timestamp
form mixed in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bgdb.sqlite_migration import sample, validate

ROWS = int(os.environ.get("BGDB_SQLITE_TEST_ROWS", "200000"))
REPO = Path(__file__).resolve().parents[3]
# Bounded means flat: once the pipeline is full (batches of 10,000 rows in flight: ~90 MB with
# the interpreter's ~37 MB) the resident size stops growing, whatever the file size. Holding the
# rows would grow it all along (several hundred bytes a row: 60 MB and more over this file),
# so the second half of the run may not exceed the first half's peak by more than a batch's
# worth or a quarter (malloc arenas of the two threads fragment more on a busy host: 63 MB peak
# on a quiet one, 130.1 MB once in CI, against a former absolute cap of 130 MB). The absolute
# cap only catches the gross case.
LATE_GROWTH_MB = 15
LATE_GROWTH_SHARE = 0.25
PEAK_RSS_MB = 200

RUN = """
import resource, sys, threading, time
from bgdb.sqlite_migration import migrate
rss = []
def watch():
    while True:
        with open("/proc/self/statm") as f:
            rss.append(int(f.read().split()[1]) * resource.getpagesize() // 1024)
        time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
code = migrate.main(sys.argv[1:])
print(f"peak_rss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
print(f"rss_kb={','.join(map(str, rss))}", file=sys.stderr)
sys.exit(code)
"""


def test_large_file_streams_in_bounded_memory_and_validates(
        migrated_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "shared_state.db"
    counts = sample.generate(db, heartbeats=ROWS, agents=100)
    proc = subprocess.run(
        [sys.executable, "-c", RUN, "--source", str(db), "--target", migrated_dsn,
         "--no-progress", "--no-backup"],
        cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stderr.rsplit("peak_rss_kb=", 1)[1].split()[0]) / 1024
    rss = [int(kb) / 1024 for kb in proc.stderr.rsplit("rss_kb=", 1)[1].split()[0].split(",")]
    half = len(rss) // 2
    early, late = max(rss[:half]), max(rss[half:])
    with capsys.disabled():  # shown with -s
        print(f"\n{ROWS} heartbeats: {proc.stdout.splitlines()[-1]}; peak RSS {peak_mb:.0f} MB "
              f"(first half of the run {early:.0f} MB, second half {late:.0f} MB, "
              f"{len(rss)} samples)")
    assert len(rss) >= 20, f"only {len(rss)} RSS samples: the run is too short to judge"
    assert late - early < max(LATE_GROWTH_MB, LATE_GROWTH_SHARE * early), \
        f"resident size grew {late - early:.0f} MB in the second half ({early:.0f} -> {late:.0f})"
    assert peak_mb < PEAK_RSS_MB

    with psycopg.connect(migrated_dsn) as conn:
        got = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
               for t in ("agents", "agent_heartbeats", "performance_metrics", "system_events",
                         "system_state")}
        # Every row is in the last 20 days: the migration made those days' partitions first.
        in_default = conn.execute("SELECT count(*) FROM agent_heartbeats_default").fetchone()
    assert got == {"agents": counts["agents"], "agent_heartbeats": counts["heartbeats"],
                   "performance_metrics": counts["performance_metrics"],
                   "system_events": counts["system_events"], "system_state": 2}
    assert in_default == (0,)

    assert validate.main(["--source", str(db), "--target", migrated_dsn, "--no-progress"]) == 0
    report = capsys.readouterr().out.splitlines()
    assert report[-1].startswith("PASS: 5 table(s) match")
    # The NULL metric values (one in 50) are all there, none parked as an issue.
    nulls = sample.null_metric_values(counts["performance_metrics"])
    line = next(x for x in report if x.startswith("  performance_metrics: NULL values kept:"))
    assert f"value {nulls}" in line.split(": ", 2)[2].split(", ")
