"""Break tests for the operational readiness checks (backups, archiving, timers, jobs, PgBouncer
pooling, exporter credentials) and the evidence checks (load test, restore drill), on the
session's deployed lab: break, run the check, assert its message, restore, check passes again."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deploy import exporter
from tests.integration.checks.test_readiness_checks import RELOAD, Breakage, on_primary, sql
from tests.sandbox_fixtures import Deployed

REPO = Path(__file__).resolve().parents[3]
STATUS = "/var/lib/bgdb/status"
ARCHIVE = "/var/lib/pgbackrest/archive"
DUMP_DIR = "/var/backups/bgdb"
INI = "/etc/pgbouncer/pgbouncer.ini"


def run_checks(deployed: Deployed, tmp_path: Path, select: str,
               extra: dict[str, Any] | None = None, later: str | None = None) -> tuple[int, str]:
    """(exit code, the Markdown report) of the checks matching `select`; `later` (libfaketime's
    "+27h", "+9d") runs them as if that much time had passed."""
    report = tmp_path / "readiness.md"
    report.unlink(missing_ok=True)
    env = {**os.environ, **deployed.env}
    if extra:
        env["BGDB_EXTRA_DATA"] = json.dumps(extra)
    clock = ["faketime", "-f", later] if later else []
    out = subprocess.run([*clock, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "checks", "-k", select, f"--readiness-report={report}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    text = report.read_text() if report.exists() else out.stdout[-3000:]
    return out.returncode, text


def capture(deployed: Deployed, command: str, host: str | None = None) -> str:
    out = subprocess.run(["ssh", "-F", str(deployed.ssh_config()),
                          host or deployed.primary.address, command],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{command}: {out.stderr}"
    return out.stdout


ARCHIVER_FAILING = ("SELECT last_failed_time IS NOT NULL AND (last_archived_time IS NULL "
                    "OR last_failed_time > last_archived_time) FROM pg_stat_archiver")
ARCHIVER_OK = ("SELECT last_archived_time IS NOT NULL AND (last_failed_time IS NULL "
               "OR last_archived_time > last_failed_time) FROM pg_stat_archiver")
NEW_WAL = sql("CREATE TABLE IF NOT EXISTS bgdb_break_wal (at timestamptz DEFAULT now()); "
              "INSERT INTO bgdb_break_wal DEFAULT VALUES; SELECT pg_switch_wal()", "postgres")


def wait_sql(query: str, seconds: int) -> str:
    """Shell: wait until `query` returns t on the primary, else fail."""
    q = sql(query, "postgres")
    return (f"for i in $(seq {seconds}); do [ \"$({q})\" = t ] && break; sleep 1; done; "
            f"[ \"$({q})\" = t ]")


def set_ini(key: str, old: str, new: str) -> str:
    return f"sed -i 's/^{key} = {old}$/{key} = {new}/' {INI} && systemctl reload pgbouncer " \
           "&& sleep 0.5"


BREAKAGES = [
    # A failing command, not /bin/true: WAL waits in pg_wal and nothing is lost meanwhile.
    Breakage("test_wal_archiving_configured",
             sql("ALTER SYSTEM SET archive_command = 'false'") + " && " + RELOAD,
             sql("ALTER SYSTEM RESET archive_command") + " && " + RELOAD,
             "archive_command = 'false', expected pgBackRest archive-push for stanza bgdb"),
    Breakage("test_wal_archiver_working",
             f"chmod 000 {ARCHIVE} && {NEW_WAL} && {wait_sql(ARCHIVER_FAILING, 90)}",
             f"chmod 750 {ARCHIVE} && {NEW_WAL} && {wait_sql(ARCHIVER_OK, 120)} && " +
             sql("DROP TABLE bgdb_break_wal", "postgres"),
             "archive_command fails: last failure on"),
    Breakage("test_backups_fresh", "mv /var/lib/pgbackrest/backup/bgdb /root/bgdb-backups",
             "mv /root/bgdb-backups /var/lib/pgbackrest/backup/bgdb",
             "stanza bgdb: missing stanza path (pgbackrest info status 1)"),
    Breakage("test_logical_dump_fresh",
             f"cp -p {STATUS}/dump.json /root/dump.json && python3 -c \"import json, time; "
             f"p = '{STATUS}/dump.json'; d = json.load(open(p)); "
             "d['last_success_timestamp'] = time.time() - 3 * 86400; "
             "json.dump(d, open(p, 'w'))\"",
             f"cp -p /root/dump.json {STATUS}/dump.json",
             "last good dump is 3.0 days old (timer bgdb-dump)"),
    Breakage("test_timers_enabled", "systemctl disable --now bgdb-backup-diff.timer",
             "systemctl enable --now bgdb-backup-diff.timer",
             "bgdb-backup-diff.timer is not enabled"),
    # A real failure: pg_dump (as postgres) cannot write its file.
    Breakage("test_scheduled_jobs_not_failing",
             f"stat -c %a {DUMP_DIR} > /root/dump-dir.mode && chmod 000 {DUMP_DIR} && "
             "(systemctl start bgdb-dump.service || true)",
             f"chmod $(cat /root/dump-dir.mode) {DUMP_DIR} && "
             "systemctl reset-failed bgdb-dump.service && systemctl start bgdb-dump.service",
             "failed jobs (journalctl -u bgdb-<job>): dump at"),
    Breakage("test_pgbouncer_pooling", set_ini("pool_mode", "transaction", "session"),
             set_ini("pool_mode", "session", "transaction"),
             "PgBouncer runs with {'pool_mode': 'session'}; the deploy asked for"),
    Breakage("test_exporter_credentials_private", f"chmod 0644 {exporter.PASSFILE}",
             f"chmod 0600 {exporter.PASSFILE}", "expected 0600 bgdb-exporter"),
]


@pytest.mark.parametrize("case", BREAKAGES, ids=[b.check for b in BREAKAGES])
def test_ops_check_fails_when_broken(deployed: Deployed, tmp_path: Path,
                                     case: Breakage) -> None:
    on_primary(deployed, case.breaks)
    try:
        code, report = run_checks(deployed, tmp_path, case.check)
        assert code == 1, f"{case.check} passed on a broken host:\n{report}"
        assert case.message in report, f"message not in the report:\n{report}"
    finally:
        on_primary(deployed, case.restores)
    code, report = run_checks(deployed, tmp_path, case.check)
    assert code == 0, f"not restored:\n{report}"


# Backups go stale only with time: stop the timers that take them and run the check as it would
# run a day and then nine days later (the repository and its timestamps are the real ones).
BACKUP_TIMERS = "bgdb-backup-full.timer bgdb-backup-diff.timer"


def test_backups_fresh_fails_when_backups_stop(deployed: Deployed, tmp_path: Path) -> None:
    on_primary(deployed, f"systemctl disable --now {BACKUP_TIMERS}")
    try:
        code, report = run_checks(deployed, tmp_path, "test_backups_fresh", later="+27h")
        assert code == 1 and re.search(r"last backup is 1\.\d days old \(daily timer "
                                       r"bgdb-backup-diff\)", report), report
        code, report = run_checks(deployed, tmp_path, "test_backups_fresh", later="+9d")
        assert code == 1 and re.search(r"last full backup is 9\.\d days old \(weekly timer "
                                       r"bgdb-backup-full\)", report), report
    finally:
        on_primary(deployed, f"systemctl enable --now {BACKUP_TIMERS}")
    code, report = run_checks(deployed, tmp_path, "test_backups_fresh or test_timers_enabled")
    assert code == 0, report


# --- load test evidence: the real check, fed evidence files --------------------------------

def evidence(tmp_path: Path, deployed: Deployed, **changes: Any) -> Path:
    """A file as bench/load_agents.py writes it: one run through PgBouncer, meeting the KPIs."""
    row = {"label": "tuned", "target": "pgbouncer",
           "where": f"{deployed.primary.address}:6432/background_agents", "agents": 200,
           "duration_s": 20.0, "operations": 24000, "tps": 1200.0, "p95_ms": 42.0,
           "errors": 0, "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    path = tmp_path / "evidence" / "load_evidence.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"schema": 1, "results": [row | changes]}))
    return path


def test_load_check_passes_on_good_evidence_and_fails_on_each_fault(deployed: Deployed,
                                                                    tmp_path: Path) -> None:
    path = evidence(tmp_path, deployed)
    extra = {"readiness_load_evidence": str(path)}
    code, report = run_checks(deployed, tmp_path, "test_load_tested", extra)
    assert code == 0, report
    stale = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    faults: list[tuple[dict[str, Any], str, str]] = [
        ({}, "missing", f"no load test evidence: {path} is missing"),
        ({"measured_at": stale}, "stale", "background_agents is 10.0 days old (measured_at"),
        ({"p95_ms": 250.0}, "p95", "p95 250.0 ms (needs < 100 ms, readiness_load_max_p95_ms)"),
        ({"tps": 300.0}, "ops", "300.0 operations/s (needs >= 1,000"),
        ({"errors": 3000}, "errors", "error rate 11.1 %"),
        ({"where": "10.231.0.250:6432/background_agents"}, "elsewhere",
         "runs were against 10.231.0.250:6432/background_agents"),
    ]
    for changes, name, message in faults:
        if name == "missing":
            path.unlink()
        else:
            evidence(tmp_path, deployed, **changes)
        code, report = run_checks(deployed, tmp_path, "test_load_tested", extra)
        assert code == 1 and message in report, f"{name}: {report}"
    # The age limit is a setting.
    evidence(tmp_path, deployed, measured_at=stale)
    code, report = run_checks(deployed, tmp_path, "test_load_tested",
                              extra | {"readiness_load_evidence_max_age_days": 14})
    assert code == 0, report


# --- restore drill: the real restore command, onto a spare host ----------------------------

def test_restore_check_needs_a_recent_successful_restore(deployed: Deployed,
                                                         tmp_path: Path) -> None:
    record = f"{STATUS}/restore-drill.json"
    on_primary(deployed, f"rm -f {record}")
    code, report = run_checks(deployed, tmp_path, "test_restore_tested")
    assert code == 1 and "no restore of this primary's backups has been recorded " \
        f"({deployed.primary.name}:{record} is missing)" in report, report

    spare = deployed.node(3)
    try:
        out = subprocess.run([sys.executable, "-m", "bgdb.restore", "--yes", "--to", spare.name],
                             cwd=REPO, env={**os.environ, **deployed.env}, capture_output=True,
                             text=True, timeout=900)
        assert out.returncode == 0, f"restore failed:\n{out.stdout[-3000:]}\n{out.stderr}"
    finally:
        capture(deployed, "(pg_dropcluster --stop 15 main || true); rm -rf "
                          "/var/lib/pgbackrest-restore "
                          "/etc/pgbackrest/restore-from-* /var/lib/postgresql/15/main.before-*",
                host=spare.address)
    done = json.loads(capture(deployed, f"cat {record}"))
    last = done["last_success"]
    assert done["ok"] is True and last["target"] == spare.name, done
    assert re.fullmatch(r"\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?", last["backup_label"]), done
    assert last["rows_verified"] >= done["tables"]["public.schema_migrations"] > 0, done
    code, report = run_checks(deployed, tmp_path, "test_restore_tested")
    assert code == 0, report

    old = (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="seconds")
    on_primary(deployed, f"cp -p {record} /root/restore-drill.json && python3 -c \"import json; "
                         f"p = '{record}'; d = json.load(open(p)); "
                         f"d['last_success']['finished_at'] = '{old}'; "
                         "json.dump(d, open(p, 'w'))\"")
    try:
        code, report = run_checks(deployed, tmp_path, "test_restore_tested")
        assert code == 1 and f"(backup {last['backup_label']} onto {spare.name}) is 40.0 days " \
            "old" in report and "readiness_restore_drill_max_age_days" in report, report
    finally:
        on_primary(deployed, f"cp -p /root/restore-drill.json {record}")
    code, report = run_checks(deployed, tmp_path, "test_restore_tested")
    assert code == 0, report
