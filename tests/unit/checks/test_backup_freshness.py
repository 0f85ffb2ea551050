"""The backup freshness check's logic, fed `pgbackrest info` output: stale full and stale
differential backups, failed backups, a broken stanza."""

from __future__ import annotations

from typing import Any

from checks.test_backup import backups_problem
from deploy.settings import Data, backup_settings

BK = backup_settings(Data({}, env={}))
NOW = 1_800_000_000.0
HOUR, DAY = 3600, 86400


def info(*backups: tuple[str, float], code: int = 0) -> dict[str, Any]:
    return {"status": {"code": code, "message": "ok" if code == 0 else "missing stanza path"},
            "backup": [{"type": t, "timestamp": {"start": NOW - age - 60, "stop": NOW - age}}
                       for t, age in backups]}


def test_fresh() -> None:
    assert backups_problem(info(("full", 3 * DAY), ("diff", 2 * HOUR)), BK, NOW) is None


def test_full_backup_older_than_8_days() -> None:
    assert backups_problem(info(("full", 9 * DAY), ("diff", HOUR)), BK, NOW) == \
        "last full backup is 9.0 days old (weekly timer bgdb-backup-full)"


def test_no_backup_for_more_than_26_hours() -> None:
    assert backups_problem(info(("full", 2 * DAY), ("diff", 30 * HOUR)), BK, NOW) == \
        "last backup is 1.2 days old (daily timer bgdb-backup-diff)"


def test_failed_backups_do_not_count() -> None:
    doc = info(("full", 2 * DAY), ("diff", HOUR))
    doc["backup"][1]["error"] = True
    assert backups_problem(doc, BK, NOW) == \
        "last backup is 2.0 days old (daily timer bgdb-backup-diff)"


def test_broken_stanza_and_empty_repository() -> None:
    assert backups_problem(info(code=1), BK, NOW) == \
        "stanza bgdb: missing stanza path (pgbackrest info status 1)"
    assert backups_problem(info(), BK, NOW) == "no valid backup in /var/lib/pgbackrest"
