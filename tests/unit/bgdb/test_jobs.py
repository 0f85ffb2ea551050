"""The job runner's pure parts: status files (read by the exporter), dump pruning, verify report
parsing, psql variables."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from bgdb import jobs
from exporters import backup_status

INFO = [{"name": "bgdb", "status": {"code": 0, "message": "ok"},
         "backup": [{"label": "20260101-010000F", "type": "full", "error": False,
                     "timestamp": {"start": 1767229200, "stop": 1767229300}}]}]


def test_status_files_and_the_exporters_view(tmp_path: Path) -> None:
    jobs.record(tmp_path, "backup-full", ok=True, exit_code=0, started=1767229200.0,
                finished=1767229300.0, message="full backup done",
                figures={"pgbackrest_info": INFO})
    jobs.record(tmp_path, "dump", ok=True, exit_code=0, started=1767230000.0,
                finished=1767230010.0, message="ok",
                figures={"dump_timestamp": 1767230010.0, "dump_bytes": 4096})
    jobs.record(tmp_path, "backup-verify", ok=False, exit_code=1, started=1767231000.0,
                finished=1767231005.0, message="checksum invalid",
                figures={"verify_timestamp": 1767231005.0, "verify_ok": False})

    full = json.loads((tmp_path / "backup-full.json").read_text())
    assert full["ok"] is True and full["last_success_at"] == "2026-01-01T01:01:40+00:00"
    verify = json.loads((tmp_path / "backup-verify.json").read_text())
    assert verify["ok"] is False and verify["last_success_timestamp"] is None
    assert oct((tmp_path / "backup.json").stat().st_mode & 0o777) == "0o644"

    # backup.json is what the exporter reads: its own parser understands every figure.
    figures = backup_status.read(tmp_path / "backup.json")
    assert figures["full_backup_timestamp"] == 1767229300
    assert figures["dump_timestamp"] == 1767230010 and figures["dump_bytes"] == 4096
    assert figures["verify_ok"] == 0
    summary = json.loads((tmp_path / "backup.json").read_text())
    assert summary["jobs"]["backup-verify"]["ok"] is False


def test_a_failure_keeps_the_last_success(tmp_path: Path) -> None:
    jobs.record(tmp_path, "maintenance-daily", ok=True, exit_code=0, started=100.0,
                finished=110.0, message="ok", figures={})
    jobs.record(tmp_path, "maintenance-daily", ok=False, exit_code=1, started=200.0,
                finished=210.0, message="psql exited with 3", figures={})
    status = json.loads((tmp_path / "maintenance-daily.json").read_text())
    assert (status["ok"], status["exit_code"], status["last_success_timestamp"]) == \
        (False, 1, 110.0)


def test_prune_dumps(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    day = 86400

    def touch(name: str, age_days: float) -> Path:
        p = tmp_path / name
        p.write_text("x")
        os.utime(p, (now - age_days * day, now - age_days * day))
        return p

    old = touch("background_agents-20260101T000000Z.dump", 10)
    old_globals = touch("globals-20260101T000000Z.sql", 10)
    recent = touch("background_agents-20260108T000000Z.dump", 3)
    leftover = touch("background_agents-20260109T000000Z.dump.partial", 0)
    other_db = touch("otherdb-20260101T000000Z.dump", 10)
    removed = jobs.prune_dumps(tmp_path, "background_agents", 7, keep=set(), now=now)
    assert sorted(removed) == sorted([old, old_globals, leftover])
    assert recent.exists() and other_db.exists()


def test_newest_dump_is_kept_whatever_its_age(tmp_path: Path) -> None:
    only = tmp_path / "background_agents-20200101T000000Z.dump"
    only.write_text("x")
    os.utime(only, (0, 0))
    assert jobs.prune_dumps(tmp_path, "background_agents", 7, keep=set()) == []


@pytest.mark.parametrize(("output", "problem"), [
    ("P00   INFO: verify command end: completed successfully (329ms)", False),
    ("P00   INFO: stanza: bgdb\n    status: error\n      checksum invalid: 1", True),
    ("P00   WARN: archiveId: 15-1, wal start: 000000010000000000000003, missing", True),
])
def test_verify_report(output: str, problem: bool) -> None:
    # pgbackrest verify 2.45 exits 0 even when it finds invalid files.
    assert bool(jobs._VERIFY_PROBLEM.search(output)) is problem


def test_sql_variables_are_checked() -> None:
    args = argparse.Namespace(var=["retention_days=30; DROP TABLE agents"], port=5432,
                              database="background_agents", file="/nonexistent.sql")
    with pytest.raises(jobs.JobError, match="bad --var"):
        jobs.job_sql(args)


def test_command_line() -> None:
    args = jobs.parser().parse_args(["--name", "backup-diff", "--port", "5433", "backup",
                                     "--stanza", "bgdb", "--type", "diff"])
    assert (args.name, args.port, args.job, args.type) == ("backup-diff", 5433, "backup", "diff")
