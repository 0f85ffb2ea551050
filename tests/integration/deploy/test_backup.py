"""WAL archiving and backups on real sandbox hosts: what the deploy sets up, each backup timer's
effect, failures that show, and restores that prove the backups (point in time in place, the
latest onto another host), plus a crash under insert load. Each test leaves archiving healthy."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg

from tests.integration.deploy.backup_helpers import (
    DATA_DIR,
    REPO,
    STATUS_DIR,
    UNIT,
    journal,
    must,
    restore_command,
    sql,
    ssh,
    start_unit,
    status,
    wait_for,
)
from tests.sandbox_fixtures import Deployed, admin_dsn

TIMERS = ["bgdb-backup-full", "bgdb-backup-diff", "bgdb-backup-verify", "bgdb-dump",
          "bgdb-maintenance-daily", "bgdb-maintenance-weekly", "bgdb-maintenance-monthly"]
REPO_PATH = "/var/lib/pgbackrest"
ARCHIVER_SQL = (REPO / "sql/exporter/archiver.sql").read_text()


def info(deployed: Deployed) -> dict[str, Any]:
    out = must(deployed, "runuser -u postgres -- pgbackrest --stanza=bgdb --output=json info")
    return dict(json.loads(out)[0])


def archiver(deployed: Deployed) -> dict[str, str]:
    """The exporter's own archiver query (sql/exporter/archiver.sql), as it would see it."""
    query = "\n".join(line for line in ARCHIVER_SQL.splitlines() if not line.startswith("--"))
    cols = ["archived", "failed", "last_archived", "age", "last_failed", "ready"]
    row = sql(deployed, query).split("\t")  # the agents' database: bg_agents_monitor lives there
    return dict(zip(cols, row, strict=True))


def archive_now(deployed: Deployed) -> None:
    """A WAL switch, waited for until the segment is in the repository."""
    must(deployed, "runuser -u postgres -- pgbackrest --stanza=bgdb check")


def test_deploy_archives_and_took_the_first_backups(deployed: Deployed) -> None:
    assert sql(deployed, "SHOW archive_mode") == "on"
    assert sql(deployed, "SHOW archive_command") == "pgbackrest --stanza=bgdb archive-push %p"
    assert sql(deployed, "SHOW wal_level") == "replica"
    assert "Configure WAL archiving and backups | Take the first full backup" in \
        deployed.first.changed
    stanza = info(deployed)
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert stanza["cipher"] == "aes-256-cbc"
    assert any(b["type"] == "full" for b in stanza["backup"])
    assert status(deployed, "backup-full")["ok"] and status(deployed, "dump")["ok"]
    # The repository is not readable by others; the status files are (the exporter reads them).
    assert must(deployed, f"stat -c '%a %U' {REPO_PATH} /etc/pgbackrest/pgbackrest.conf "
                          f"{STATUS_DIR}/backup.json").split() == \
        ["750", "postgres", "640", "root", "644", "postgres"]


def test_every_timer_installed_and_enabled(deployed: Deployed) -> None:
    units = " ".join(f"{t}.timer" for t in TIMERS)
    enabled = must(deployed, f"systemctl is-enabled {units}").split()
    active = must(deployed, f"systemctl is-active {units}").split()
    assert enabled == ["enabled"] * len(TIMERS), dict(zip(TIMERS, enabled, strict=True))
    assert active == ["active"] * len(TIMERS), dict(zip(TIMERS, active, strict=True))
    calendar = must(deployed, "systemctl show -p TimersCalendar --value bgdb-backup-full.timer")
    assert "Sun *-*-* 01:00:00" in calendar


def test_backup_services_have_their_effect(deployed: Deployed) -> None:
    for unit in ("bgdb-backup-diff", "bgdb-backup-verify", "bgdb-dump"):
        out = start_unit(deployed, unit)
        assert out.returncode == 0, f"{unit} failed:\n{journal(deployed, unit)}"
    assert any(b["type"] == "diff" for b in info(deployed)["backup"])
    summary = json.loads(must(deployed, f"cat {STATUS_DIR}/backup.json"))
    assert summary["verify_ok"] is True and time.time() - summary["verify_timestamp"] < 120
    assert time.time() - summary["dump_timestamp"] < 120 and summary["dump_bytes"] > 0
    newest = must(deployed, "ls -t /var/backups/bgdb/background_agents-*.dump | head -n1").strip()
    listing = must(deployed, f"pg_restore --list {newest}")
    assert "TABLE public agents" in listing, listing[:500]
    assert all(summary["jobs"][j]["ok"] for j in ("backup-diff", "backup-verify", "dump"))


def test_verify_failure_is_reported(deployed: Deployed) -> None:
    label = info(deployed)["backup"][-1]["label"]
    victim = must(deployed, f"find {REPO_PATH}/backup/bgdb/{label} -name '*.zst' -size +8k "
                            "| head -n1").strip()
    assert victim, f"no file to corrupt in backup {label}"
    must(deployed, f"cp -p {victim} /root/victim && "
                   f"printf garbage | dd of={victim} bs=1 seek=100 conv=notrunc 2>/dev/null")
    try:
        out = start_unit(deployed, "bgdb-backup-verify")
        assert out.returncode != 0, "verify of a corrupted backup succeeded"
        failed = status(deployed, "backup-verify")
        assert failed["ok"] is False and "verify found problems" in failed["message"]
        assert json.loads(must(deployed, f"cat {STATUS_DIR}/backup.json"))["verify_ok"] is False
        assert "FAILED" in journal(deployed, "bgdb-backup-verify")
        events = sql(deployed, "SELECT count(*) FROM system_events WHERE event_type = "
                               "'scheduled_job_failed' AND event_data->>'job' = 'backup-verify' "
                               "AND timestamp > now() - interval '5 minutes'")
        assert int(events) >= 1, "the failure is not a system event"
    finally:
        must(deployed, f"cp -p /root/victim {victim} && rm /root/victim && "
                       "systemctl reset-failed bgdb-backup-verify.service")
    assert start_unit(deployed, "bgdb-backup-verify").returncode == 0
    assert status(deployed, "backup-verify")["ok"] is True


def test_archiving_failure_is_visible_and_catches_up(deployed: Deployed) -> None:
    before = int(archiver(deployed)["failed"])
    write = ("CREATE TABLE IF NOT EXISTS bgdb_test_wal (at timestamptz DEFAULT now()); "
             "INSERT INTO bgdb_test_wal DEFAULT VALUES; SELECT pg_switch_wal()")
    must(deployed, f"chmod 000 {REPO_PATH}/archive")
    try:
        sql(deployed, write, db="postgres")
        wait_for("pg_stat_archiver.failed_count to rise",
                 lambda: int(archiver(deployed)["failed"]) > before, timeout=60)
        seen = archiver(deployed)
        assert float(seen["last_failed"]) > float(seen["last_archived"] or 0)
        assert int(seen["ready"]) >= 1, f"no WAL waiting although archiving fails: {seen}"
    finally:
        must(deployed, f"chmod 750 {REPO_PATH}/archive")
    sql(deployed, write, db="postgres")  # a new segment wakes the archiver at once

    def caught_up() -> bool:
        seen = archiver(deployed)
        return seen["last_archived"] != "" and \
            float(seen["last_archived"]) > float(seen["last_failed"]) and seen["ready"] == "0"

    wait_for("archiving to catch up", caught_up, timeout=120)
    sql(deployed, "DROP TABLE bgdb_test_wal", db="postgres")


def test_point_in_time_restore_drill(deployed: Deployed) -> None:
    dsn = admin_dsn(deployed.primary.address)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bgdb_drill")
        conn.execute("CREATE TABLE bgdb_drill (id int PRIMARY KEY, at timestamptz NOT NULL "
                     "DEFAULT clock_timestamp())")
        for i in range(1, 101):
            conn.execute("INSERT INTO bgdb_drill (id) VALUES (%s)", [i])
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        target = row[0]
        time.sleep(1.5)
        for i in range(101, 151):
            conn.execute("INSERT INTO bgdb_drill (id) VALUES (%s)", [i])
    archive_now(deployed)  # the rows after T are in the archive too: recovery must stop at T
    must(deployed, f"kill -9 $(head -n1 {DATA_DIR}/postmaster.pid); sleep 1; "
                   f"systemctl stop {UNIT}; rm -rf {DATA_DIR}")

    started = time.monotonic()
    out = restore_command(deployed, "--time", target.isoformat())
    assert out.returncode == 0, f"restore failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    took = time.monotonic() - started

    rows = sql(deployed, "SELECT count(*), min(id), max(id), max(at) <= "
                         f"'{target.isoformat()}' FROM bgdb_drill", db="postgres").split("\t")
    assert rows == ["100", "1", "100", "t"], f"restored rows (count, min, max, before T): {rows}"
    assert sql(deployed, "SELECT pg_is_in_recovery()") == "f"
    assert int(sql(deployed, "SELECT timeline_id FROM pg_control_checkpoint()")) > 1
    # Archiving goes on, on the new timeline; the roles and the app schema came back too.
    archive_now(deployed)
    assert sql(deployed, "SELECT count(*) FROM pg_roles WHERE rolname = 'bg_agents_user'") == "1"
    assert "restored in" in out.stdout, out.stdout[-500:]
    print(f"point-in-time restore took {took:.1f}s")
    sql(deployed, "DROP TABLE bgdb_drill", db="postgres")


def test_restore_latest_onto_a_second_host(deployed: Deployed) -> None:
    other = deployed.node(3)
    sql(deployed, "CREATE TABLE bgdb_marker AS SELECT 'latest'::text AS v", db="postgres")
    try:
        out = restore_command(deployed, "--to", other.name)
        assert out.returncode == 0, f"restore failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        # The last commit before the restore is there: "latest" includes the current WAL.
        assert sql(deployed, "SELECT v FROM bgdb_marker", db="postgres",
                   host=other.address) == "latest"
        assert sql(deployed, "SELECT count(*) FROM agents", host=other.address) is not None
        # The copy never archives into a repository (it has none of its own).
        assert sql(deployed, "SHOW archive_mode", db="postgres", host=other.address) == "off"
    finally:
        ssh(deployed, "pg_dropcluster --stop 15 main; rm -rf /var/lib/pgbackrest-restore "
                      "/etc/pgbackrest/restore-from-* /var/lib/postgresql/15/main.before-*",
            host=other.address)
        sql(deployed, "DROP TABLE bgdb_marker", db="postgres")


def test_crash_loses_no_acknowledged_insert(deployed: Deployed) -> None:
    dsn = admin_dsn(deployed.primary.address)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bgdb_crash")
        conn.execute("CREATE TABLE bgdb_crash (id bigint PRIMARY KEY, writer int NOT NULL)")
    acknowledged: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                i = n
                while not stop.is_set():
                    conn.execute("INSERT INTO bgdb_crash VALUES (%s, %s)", [i, n])
                    with lock:  # committed: the server said so
                        acknowledged.append(i)
                    i += 4
        except psycopg.Error:
            pass  # the crash: whatever was not acknowledged may or may not be there

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    wait_for("inserts under way", lambda: len(acknowledged) > 200, timeout=30, every=0.2)
    must(deployed, f"kill -9 $(head -n1 {DATA_DIR}/postmaster.pid)")
    for t in threads:
        t.join(timeout=30)
    stop.set()
    assert all(not t.is_alive() for t in threads)
    # systemd notices the dead postmaster; starting the unit runs crash recovery.
    wait_for("PostgreSQL to start after the crash",
             lambda: ssh(deployed, f"systemctl start {UNIT} && runuser -u postgres -- "
                                   "psql -XAtq -c 'SELECT 1'").returncode == 0, timeout=90,
             every=2)
    present = {int(x) for x in sql(deployed, "SELECT id FROM bgdb_crash",
                                   db="postgres").split()}
    missing = set(acknowledged) - present
    assert not missing, f"{len(missing)} acknowledged inserts lost, e.g. {sorted(missing)[:10]}"
    assert len(acknowledged) > 200
    print(f"crash: {len(acknowledged)} acknowledged inserts, all present ({len(present)} rows)")
    sql(deployed, "DROP TABLE bgdb_crash", db="postgres")
    archive_now(deployed)
