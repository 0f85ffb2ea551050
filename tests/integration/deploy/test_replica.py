"""Streaming replicas on real sandbox hosts: its own lab `repl` (db1 primary, rep1 and rep2
replicas), deployed once for the module. The tests run in file order; the promotion is last,
since it makes rep1 the primary."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy import pgsql, postgres, replica, secrets
from deploy.runner import DeployResult, run_deploy
from deploy.settings import replication_slot_name
from sandbox import hosts as sandbox_hosts
from tests.integration.checks.test_readiness_breaks_ops import run_checks
from tests.sandbox_fixtures import Deployed, admin_dsn, booted_lab

REPO = Path(__file__).resolve().parents[3]
SPECS = [sandbox_hosts.HostSpec("db1", ("postgres_primary", "monitoring")),
         sandbox_hosts.HostSpec("rep1", ("postgres_replicas",)),
         sandbox_hosts.HostSpec("rep2", ("postgres_replicas",))]
PROBE_DB = "repl_probe"
UNIT = "postgresql@15-main"
DATA_DIR = "/var/lib/postgresql/15/main"
CONF_DIR = "/etc/postgresql/15/main"
EXPORTER_PORT = 9847


@pytest.fixture(scope="module")
def lab() -> Iterator[Deployed]:
    """Boot the lab (a name no other live session holds) and deploy it once.
    BGDB_REPL_LAB=<name>: deploy to that lab, already up with SPECS, and leave it up (debugging;
    the promotion test changes it for good)."""
    if os.environ.get("BGDB_REPL_LAB"):
        yield _deployed(sandbox_hosts.Lab.load(os.environ["BGDB_REPL_LAB"]))
        return
    started = time.monotonic()
    with booted_lab("repl", SPECS) as booted:
        print(f"\nlab {booted.name} up in {time.monotonic() - started:.1f}s")
        yield _deployed(booted)


def _deployed(booted: sandbox_hosts.Lab | None) -> Deployed:
    assert booted is not None, "no such lab"
    env = {"BGDB_LAB": booted.name}
    first = run_deploy(env)
    print(f"first deploy: {first.describe()}")
    if first.returncode != 0 or first.errors:
        pytest.fail(f"first deploy failed ({first.describe()}):\n{first.report()}")
    with psycopg.connect(admin_dsn(booted.hosts[0].address), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (PROBE_DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {PROBE_DB}")
    with connect(booted.hosts[0].address) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS probe (id bigint GENERATED ALWAYS AS "
                     "IDENTITY PRIMARY KEY, note text NOT NULL)")
    return Deployed(booted, first, env)


def host(lab: Deployed, short: str) -> sandbox_hosts.Host:
    return next(h for h in lab.lab.hosts if h.name.endswith(f"-{short}"))


def connect(address: str, dbname: str = PROBE_DB) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(admin_dsn(address, dbname), autocommit=True)


def ssh(lab: Deployed, short: str, command: str) -> str:
    out = subprocess.run(["ssh", "-F", str(lab.ssh_config()), host(lab, short).address, command],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{short}: {command}: {out.stderr}"
    return out.stdout.strip()


def value(address: str, query: str, dbname: str = PROBE_DB) -> object:
    with connect(address, dbname) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def write_rows(address: str, note: str, count: int) -> int:
    """Insert and commit `count` rows; the highest id committed."""
    with connect(address) as conn:
        row = conn.execute("INSERT INTO probe (note) SELECT %s FROM generate_series(1, %s) "
                           "RETURNING id", (note, count)).fetchall()
    return max(int(str(r[0])) for r in row)


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Seconds until check() held; fails after timeout."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def visible(address: str, last_id: int) -> Callable[[], bool]:
    return lambda: value(address, f"SELECT count(*) FROM probe WHERE id = {last_id}") == 1


def scrape(address: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The deployed exporter's metrics on that host."""
    with urllib.request.urlopen(f"http://{address}:{EXPORTER_PORT}/metrics", timeout=15) as r:
        text = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def start_time(address: str) -> object:
    return value(address, "SELECT pg_postmaster_start_time()", "postgres")


# --- the tests, in order -------------------------------------------------------------------------

def test_replicas_stream_after_the_first_deploy(lab: Deployed) -> None:
    primary = host(lab, "db1").address
    for short in ("rep1", "rep2"):
        address = host(lab, short).address
        assert value(address, "SELECT pg_is_in_recovery()", "postgres") is True
        assert value(address, "SELECT status FROM pg_stat_wal_receiver", "postgres") == \
            "streaming"
        assert value(address, "SELECT sender_host FROM pg_stat_wal_receiver", "postgres") == \
            primary
    with connect(primary, "postgres") as conn:
        rows = conn.execute("SELECT r.application_name, r.state, s.ssl, sl.slot_name "
                            "FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) "
                            "JOIN pg_replication_slots sl ON sl.active_pid = r.pid "
                            "ORDER BY 1").fetchall()
    slots = [replication_slot_name(host(lab, s).name) for s in ("rep1", "rep2")]
    assert rows == [(slot, "streaming", True, slot) for slot in slots]
    # The fact the clone guard decides on, as pyinfra runs it on the host.
    fact = replica.StandbyState()
    command = fact.command(data_dir=DATA_DIR, marker=f"{CONF_DIR}/{replica.CLONE_PENDING}",
                           port=5432)
    assert fact.process(ssh(lab, "rep1", command).splitlines()) == ("standby", "t,streaming")
    assert fact.process(ssh(lab, "db1", command).splitlines()) == ("other", "f,none")
    # Multi-column facts split into columns under sh (dash), as pyinfra runs them: the
    # promoted-primary checkpoint in deploy/postgres.py decides on three of them.
    facts = pgsql.PsqlRows()
    query = facts.command(query=postgres.TIMELINE_QUERY, port=5432)
    assert facts.process(ssh(lab, "db1", f"sh -c {shlex.quote(query)}").splitlines()) == \
        [["f", "1", "1"]]


def test_rows_on_the_primary_are_readable_on_both_replicas_within_a_second(
        lab: Deployed) -> None:
    last = write_rows(host(lab, "db1").address, "visible", 100)
    for short in ("rep1", "rep2"):
        took = wait_for(f"row {last} on {short}", visible(host(lab, short).address, last), 1.0)
        print(f"{short}: row visible {took * 1000:.0f} ms after commit")


def test_exporter_reports_roles_lag_and_slots(lab: Deployed) -> None:
    write_rows(host(lab, "db1").address, "lag", 10)
    time.sleep(0.5)
    on_primary = scrape(host(lab, "db1").address)
    assert metric(on_primary, "bgdb_pg_in_recovery") == 0
    for short in ("rep1", "rep2"):
        slot = replication_slot_name(host(lab, short).name)
        assert metric(on_primary, "bgdb_pg_replication_streaming", replica=slot) == 1
        # the streaming-replica layout replicates asynchronously (HA mode: Patroni's sync standby)
        assert metric(on_primary, "bgdb_pg_replication_sync", replica=slot) == 0
        lag_bytes = metric(on_primary, "bgdb_pg_replication_lag_bytes", replica=slot)
        assert lag_bytes is not None and lag_bytes < 1 << 20, f"{short}: {lag_bytes} bytes"
        assert metric(on_primary, "bgdb_pg_replication_slot_active", slot=slot,
                      type="physical") == 1
        on_replica = scrape(host(lab, short).address)
        assert metric(on_replica, "bgdb_up") == 1
        assert metric(on_replica, "bgdb_pg_in_recovery") == 1
        assert metric(on_replica, "bgdb_pg_replica_streaming") == 1
        lag = metric(on_replica, "bgdb_pg_replica_lag_seconds")
        assert lag is not None and lag < 1.0, f"{short}: lag {lag} s"
        # Replay catches up within moments; on a loaded machine a scrape can land in between.
        deadline = time.monotonic() + 10
        while metric(on_replica, "bgdb_pg_replica_replay_lag_bytes") != 0:
            assert time.monotonic() < deadline, f"{short}: replay lag stays above 0 bytes"
            time.sleep(0.5)
            on_replica = scrape(host(lab, short).address)


def test_readonly_role_reads_on_a_replica_and_writes_fail_read_only(lab: Deployed) -> None:
    ca = str(secrets.secrets_dir() / "ca" / "ca.crt")
    for role in ("bg_agents_readonly", "bg_agents_user"):
        dsn = psycopg.conninfo.make_conninfo(
            host=host(lab, "rep1").address, port=6432, dbname="background_agents", user=role,
            password=secrets.password(role, env="POSTGRESQL_PASSWORD"
                                      if role == "bg_agents_user" else None),
            sslmode="verify-full", sslrootcert=ca, connect_timeout=10)
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
            assert conn.execute("SELECT count(*) FROM agents").fetchone() is not None
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction,
                               match="cannot execute INSERT in a read-only transaction"):
                conn.execute("INSERT INTO agents (agent_id, name, type) VALUES ('x', 'x', 'x')")


def test_a_stopped_replica_catches_up_from_its_slot(lab: Deployed) -> None:
    primary = host(lab, "db1").address
    slot = replication_slot_name(host(lab, "rep2").name)
    ssh(lab, "rep2", f"systemctl stop {UNIT}")
    try:
        wait_for("slot inactive", lambda: value(
            primary, f"SELECT NOT active FROM pg_replication_slots WHERE slot_name = '{slot}'",
            "postgres") is True, 10)
        last = write_rows(primary, "while rep2 was down", 20000)
        with connect(primary, "postgres") as conn:
            conn.execute("SELECT pg_switch_wal()")
        retained = value(primary, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) "
                         f"FROM pg_replication_slots WHERE slot_name = '{slot}'", "postgres")
        assert retained is not None and float(str(retained)) > 1 << 20, retained
        samples = scrape(primary)
        assert metric(samples, "bgdb_pg_replication_slot_active", slot=slot,
                      type="physical") == 0
        shown = metric(samples, "bgdb_pg_replication_slot_retained_bytes", slot=slot,
                       type="physical")
        assert shown is not None and shown > 1 << 20, f"slot metric while down: {shown}"
        wait_for("rep1 keeps streaming", visible(host(lab, "rep1").address, last), 5)
    finally:
        ssh(lab, "rep2", f"systemctl start {UNIT}")
    took = wait_for("rep2 caught up", visible(host(lab, "rep2").address, last), 30)
    print(f"rep2 caught up {took:.2f} s after its start")
    wait_for("slot active and drained", lambda: value(
        primary, "SELECT active AND pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) < 1048576 "
        f"FROM pg_replication_slots WHERE slot_name = '{slot}'", "postgres") is True, 10)


def _set_groups(lab: Deployed, short: str, groups: list[str]) -> None:
    loaded = sandbox_hosts.Lab.load(lab.lab.name)
    assert loaded is not None
    for h in loaded.hosts:
        if h.name.endswith(f"-{short}"):
            h.groups = groups
    loaded.save()


def _deploy(lab: Deployed, **extra: object) -> DeployResult:
    result = lab.deploy(json.dumps(extra) if extra else None)
    print(f"deploy {extra or ''}: {result.describe()}")
    assert result.returncode == 0 and not result.errors, result.report()
    return result


def test_removing_and_re_adding_a_replica(lab: Deployed) -> None:
    """Removed (and shut down): its slot stays until postgres_drop_orphan_slots; re-added with
    postgres_replica_reclone: copied again, while rep1 is never touched."""
    primary, rep1 = host(lab, "db1").address, host(lab, "rep1").address
    slot = replication_slot_name(host(lab, "rep2").name)
    rep1_started = start_time(rep1)
    slot_count = f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    _set_groups(lab, "rep2", [])
    # Removed hosts are shut down. A running rep2 would stream again as soon as the re-adding
    # deploy recreates its slot (while its WAL is still on the primary), and the deploy rightly
    # never copies a streaming replica: whether it copied would depend on that race.
    ssh(lab, "rep2", f"systemctl stop {UNIT}")
    try:
        kept = _deploy(lab)
        assert value(primary, slot_count, "postgres") == 1, "slot dropped without the flag"
        assert f"{slot} belong to no replica" in kept.output
        _deploy(lab, postgres_drop_orphan_slots=True)
        assert value(primary, slot_count, "postgres") == 0, "orphan slot not dropped"
    finally:
        _set_groups(lab, "rep2", ["postgres_replicas"])
    last = write_rows(primary, "before re-adding rep2", 10)
    readded = _deploy(lab, postgres_replica_reclone=True)
    assert any("Copy" in op and "pg_basebackup" in op for op in readded.changed), readded.changed
    assert value(primary, slot_count, "postgres") == 1
    wait_for("rep2 streams again", lambda: value(
        host(lab, "rep2").address, "SELECT status FROM pg_stat_wal_receiver",
        "postgres") == "streaming", 30)
    assert visible(host(lab, "rep2").address, last)()
    assert start_time(rep1) == rep1_started, "rep1 was restarted while rep2 came and went"


def test_readiness_checks_pass_on_primary_and_replicas(lab: Deployed, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "checks/test_replica.py",
         "checks/test_postgres.py", "checks/test_audit.py", "checks/test_updates.py",
         f"--readiness-report={tmp_path / 'readiness.md'}",
         f"--junitxml={tmp_path / 'readiness.xml'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **lab.env})
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert " passed" in out.stdout


def replica_checks(lab: Deployed, tmp_path: Path, select: str, **extra: object
                   ) -> tuple[int, str]:
    """(exit code, report) of the replica checks matching `select`, as an operator runs them."""
    return run_checks(lab, tmp_path, f"test_replica_ and ({select})", extra or None)


def test_streaming_and_slot_checks_fail_while_the_wal_receiver_is_down(
        lab: Deployed, tmp_path: Path) -> None:
    """Break: rep2's primary_conninfo points at a closed port (ALTER SYSTEM overrides the
    drop-in), so its WAL receiver stops and its slot on the primary goes inactive."""
    rep2 = host(lab, "rep2")
    slot = replication_slot_name(rep2.name)
    with connect(rep2.address, "postgres") as conn:
        conn.execute("ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        wait_for("rep2's WAL receiver stopped", lambda: value(
            rep2.address, "SELECT count(*) FROM pg_stat_wal_receiver", "postgres") == 0, 15)
        wait_for("slot inactive", lambda: value(
            host(lab, "db1").address, "SELECT NOT active FROM pg_replication_slots WHERE "
            f"slot_name = '{slot}'", "postgres") is True, 15)
        code, report = replica_checks(lab, tmp_path, "streaming or slot")
        assert code == 1, f"the checks passed with rep2 not streaming:\n{report}"
        assert f"{rep2.name} has no WAL receiver (not connected to the primary)" in report, \
            report
        assert f"slot {slot}: (type, active) = ['physical', 'false']" in report, report
    finally:
        with connect(rep2.address, "postgres") as conn:
            conn.execute("ALTER SYSTEM RESET primary_conninfo")
            conn.execute("SELECT pg_reload_conf()")
    wait_for("rep2 streams again", lambda: value(
        rep2.address, "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
        "postgres") == 1, 30)
    wait_for("slot active", lambda: value(
        host(lab, "db1").address, "SELECT active FROM pg_replication_slots WHERE "
        f"slot_name = '{slot}'", "postgres") is True, 15)
    code, report = replica_checks(lab, tmp_path, "streaming or slot")
    assert code == 0, f"not restored:\n{report}"


def test_lag_check_fails_while_replay_is_paused(lab: Deployed, tmp_path: Path) -> None:
    """Break: replay paused on rep2 while the primary writes; the check, given small
    thresholds through the settings it reads, names the lag and the threshold."""
    rep2 = host(lab, "rep2")
    select = f"lag and {rep2.name}"
    with connect(rep2.address, "postgres") as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        wait_for("replay paused", lambda: value(
            rep2.address, "SELECT pg_get_wal_replay_pause_state()", "postgres") == "paused", 10)
        last = write_rows(host(lab, "db1").address, "while replay is paused", 5000)
        wait_for("rep2 received 64 KiB it did not replay", lambda: float(str(value(
            rep2.address, "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
            "pg_last_wal_replay_lsn())", "postgres"))) > 1 << 16, 15)
        code, report = replica_checks(lab, tmp_path, select,
                                      postgres_replica_max_lag_bytes=1 << 16,
                                      postgres_replica_max_lag_seconds=86400)
        assert code == 1, f"the lag check passed with replay paused:\n{report}"
        assert f"{rep2.name} has " in report, report
        assert "bytes of WAL received but not replayed (threshold 65536)" in report, report
        time.sleep(1.1)  # the last replayed transaction is now over a second old
        code, report = replica_checks(lab, tmp_path, select, postgres_replica_max_lag_seconds=1)
        assert code == 1, f"the lag check passed with replay paused:\n{report}"
        assert f"{rep2.name} replays " in report, report
        assert " s behind (threshold 1 s)" in report, report
    finally:
        with connect(rep2.address, "postgres") as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    wait_for("rep2 replayed the rows", visible(rep2.address, last), 15)
    code, report = replica_checks(lab, tmp_path, select)
    assert code == 0, f"not restored:\n{report}"


def test_promote_rep1_after_the_primary_stops(lab: Deployed) -> None:
    primary = host(lab, "db1").address
    rep1, rep2 = host(lab, "rep1").address, host(lab, "rep2").address
    last = write_rows(primary, "committed before the stop", 5000)
    committed = value(primary, "SELECT count(*) FROM probe")
    ssh(lab, "db1", f"systemctl stop {UNIT}")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "bgdb.promote", host(lab, "rep1").name],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, **lab.env})
    print(f"promotion took {time.monotonic() - started:.1f}s:\n{out.stdout}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert value(rep1, "SELECT pg_is_in_recovery()", "postgres") is False
    assert value(rep1, "SELECT timeline_id FROM pg_control_checkpoint()", "postgres") == 2, \
        "pg_control still names the old timeline: pgBackRest would refuse to back up"
    for address in (rep1, rep2):
        assert value(address, "SELECT count(*) FROM probe") == committed, \
            f"rows committed on the old primary are missing on {address}"
        assert value(address, f"SELECT count(*) FROM probe WHERE id = {last}") == 1
    assert value(rep2, "SELECT sender_host FROM pg_stat_wal_receiver", "postgres") == rep1
    new_last = write_rows(rep1, "written on the new primary", 10)
    wait_for("rep2 follows rep1", visible(rep2, new_last), 1.0)
    assert ssh(lab, "db1", f"systemctl is-enabled {UNIT} || true") == "masked", \
        "the old primary was not fenced"


def test_in_recovery_check_fails_for_the_promoted_replica(lab: Deployed, tmp_path: Path) -> None:
    """Broken by the promotion: rep1 is still in postgres_replicas but runs as a primary. The
    rebuild below (rep1 into postgres_primary) restores the inventory's truth."""
    rep1 = host(lab, "rep1")
    code, report = replica_checks(lab, tmp_path, f"in_recovery and {rep1.name}")
    assert code == 1, f"the check passed for a promoted replica:\n{report}"
    assert f"{rep1.name} is not in recovery: it runs as a primary (promoted?)" in report, report


BACKUP_TIMERS = ("bgdb-backup-full.timer", "bgdb-backup-diff.timer", "bgdb-backup-verify.timer",
                 "bgdb-dump.timer")


def test_after_promotion_the_deploy_rebuilds_the_old_primary_as_a_replica(lab: Deployed) -> None:
    """The documented follow-up: rep1 into postgres_primary, db1 into postgres_replicas with
    postgres_replica_reclone, deploy. rep1 gets the primary's backups (its stanza, archiving,
    a first full backup, the timers); db1 no longer runs them. A further deploy changes
    nothing."""
    db1, rep1, rep2 = (host(lab, s).address for s in ("db1", "rep1", "rep2"))
    _set_groups(lab, "rep1", ["postgres_primary", "monitoring"])
    _set_groups(lab, "db1", ["postgres_replicas"])
    rep2_started = start_time(rep2)
    # bgdb.promote checkpointed; after a promotion by other means, pg_control names timeline 1
    # until the spread checkpoint ends and the deploy checkpoints before the first backup.
    print("rep1 before the deploy (pg_control, WAL timeline): " + str(value(
        rep1, "SELECT (SELECT timeline_id FROM pg_control_checkpoint()) || ', ' || "
        "substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)", "postgres")))
    _deploy(lab, postgres_replica_reclone=True)
    last = write_rows(rep1, "after the rebuild", 10)
    for address in (db1, rep2):
        wait_for(f"{address} follows rep1", visible(address, last), 5)
        assert value(address, "SELECT sender_host FROM pg_stat_wal_receiver", "postgres") == rep1
    assert start_time(rep2) == rep2_started, "rep2 was restarted or copied again"

    # Backups follow the primary: WAL of the new timeline reaches rep1's repository.
    ssh(lab, "rep1", "cd / && runuser -u postgres -- pgbackrest --stanza=bgdb check")
    info = json.loads(ssh(lab, "rep1", "cd / && runuser -u postgres -- pgbackrest "
                                       "--stanza=bgdb --output=json info"))[0]
    assert info["status"]["code"] == 0, info["status"]
    assert any(b["type"] == "full" for b in info["backup"]), info["backup"]
    archived = value(rep1, "SELECT archived_count FROM pg_stat_archiver", "postgres")
    write_rows(rep1, "to archive", 10)
    with connect(rep1, "postgres") as conn:
        conn.execute("SELECT pg_switch_wal()")
    wait_for("rep1 archives a segment", lambda: int(str(value(
        rep1, "SELECT archived_count FROM pg_stat_archiver", "postgres"))) > int(str(archived)),
        30)
    assert value(rep1, "SELECT substr(last_archived_wal, 1, 8) || ' ' || coalesce("
                 "(last_failed_time > last_archived_time)::text, 'false') FROM pg_stat_archiver",
                 "postgres") == "00000002 false"
    both = " ".join(BACKUP_TIMERS)
    assert ssh(lab, "rep1", f"systemctl is-enabled {both}").split() == ["enabled"] * 4
    assert ssh(lab, "rep1", f"systemctl is-active {both}").split() == ["active"] * 4
    assert ssh(lab, "db1", f"systemctl is-enabled {both} || true").split() == ["disabled"] * 4
    assert ssh(lab, "db1", f"systemctl is-active {both} || true").split() == ["inactive"] * 4

    before = {s: start_time(host(lab, s).address) for s in ("db1", "rep1", "rep2")}
    # The module's no-change deploy (one, for CI time): every replica and primary operation
    # runs here too, on hosts first deployed (rep1), copied again (rep2) and rebuilt (db1).
    again = lab.deploy()
    print(f"deploy after the rebuild: {again.describe()}")
    assert again.returncode == 0, again.report()
    assert again.total_ops > 40, "the results table was not read"
    assert again.changed == [], f"a deploy after the rebuild changed: {again.changed}"
    assert {s: start_time(host(lab, s).address) for s in ("db1", "rep1", "rep2")} == before
