"""Backup and maintenance items for the primary (in HA mode whoever leads now): WAL archiving that
works (pg_stat_archiver, not only the setting), fresh pgBackRest backups and dumps, the timers,
and no failed scheduled job. Freshness limits are the alerts' (alerts/bgdb.rules.yml)."""

from __future__ import annotations

import json
import time
from typing import Any

from bgdb.remote import Target
from checks import ha
from checks.timers import MAINTENANCE_TIMERS, failed_jobs, timer_problems
from deploy.settings import BackupSettings, Data, backup_settings

TIMERS = ["bgdb-backup-full", "bgdb-backup-diff", "bgdb-backup-verify", "bgdb-dump",
          *MAINTENANCE_TIMERS]
# With a backup host, the backups and verify run there; the primary records their state.
REPO_HOST_TIMERS = ["bgdb-dump", "bgdb-backup-info", *MAINTENANCE_TIMERS]
REPO_HOST_BACKUP_TIMERS = ["bgdb-backup-full", "bgdb-backup-diff", "bgdb-backup-verify"]
FULL_MAX_AGE = 8 * 86400  # weekly full backups
ANY_MAX_AGE = 26 * 3600  # daily differential backups and dumps
ARCHIVE_STUCK_AFTER = 900  # WAL waiting and nothing archived for 15 minutes


def _bk(primary: Target) -> BackupSettings:
    return backup_settings(Data(primary.inv.data))


def _timers(bk: BackupSettings) -> list[str]:
    return REPO_HOST_TIMERS if bk.repo_host else TIMERS


def _age(seconds: float) -> str:
    return f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} hours"


def test_wal_archiving_configured(primary: Target) -> None:
    """WAL archiving is on and goes to pgBackRest (CIS 3.x: archive_mode with a real command)"""
    bk = _bk(primary)
    assert primary.setting("archive_mode") == "on", "archive_mode is off: no point-in-time recovery"
    command = primary.setting("archive_command")
    assert f"pgbackrest --stanza={bk.stanza} archive-push" in command, \
        f"archive_command = '{command}', expected pgBackRest archive-push for stanza {bk.stanza}"
    assert primary.setting("wal_level") in ("replica", "logical"), \
        f"wal_level = {primary.setting('wal_level')}: WAL cannot be archived for recovery"


def test_wal_archiver_working(primary: Target) -> None:
    """The WAL archiver is not failing and not stuck (pg_stat_archiver)"""
    row = primary.sql(
        "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, ''), failed_count, "
        "last_failed_time IS NOT NULL AND (last_archived_time IS NULL "
        "OR last_failed_time > last_archived_time), "
        "coalesce(extract(epoch FROM now() - last_archived_time)::int, -1), "
        "(SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') "
        "FROM pg_stat_archiver")[0]
    archived, failed_wal, failed_count, failing, age, ready = row
    assert failing != "t", (f"archive_command fails: last failure on {failed_wal} "
                            f"({failed_count} failures), no success since; "
                            f"see /var/log/postgresql and /var/log/pgbackrest")
    stuck = int(ready) > 0 and (int(age) < 0 or int(age) > ARCHIVE_STUCK_AFTER)
    assert not stuck, (f"{ready} WAL segment(s) wait to be archived and the last success "
                       f"({archived or 'none'}) was {'never' if int(age) < 0 else _age(int(age))} "
                       "ago")


def _pgbackrest_info(primary: Target, bk: BackupSettings) -> dict[str, Any]:
    out = primary.host.run(f"runuser -u postgres -- pgbackrest --stanza={bk.stanza} "
                           "--output=json info")
    assert out.rc == 0, f"pgbackrest info failed: {out.stderr.strip()}"
    info = json.loads(out.stdout)
    assert info, f"pgbackrest knows no stanza {bk.stanza}"
    return dict(info[0])


def backups_problem(info: dict[str, Any], bk: BackupSettings, now: float) -> str | None:
    """What is wrong with the stanza's backups (pgbackrest info), or None."""
    status = info.get("status", {})
    if status.get("code") != 0:
        return f"stanza {bk.stanza}: {status.get('message')} (pgbackrest info status " \
               f"{status.get('code')})"
    backups = [b for b in info.get("backup") or [] if not b.get("error")]
    if not backups:
        return f"no valid backup in {bk.repo_path}"
    newest = max(b["timestamp"]["stop"] for b in backups)
    full = [b["timestamp"]["stop"] for b in backups if b.get("type") == "full"]
    if not full or now - max(full) > FULL_MAX_AGE:
        return f"last full backup is {_age(now - max(full)) if full else 'missing'} old " \
               "(weekly timer bgdb-backup-full)"
    if now - newest > ANY_MAX_AGE:
        return f"last backup is {_age(now - newest)} old (daily timer bgdb-backup-diff)"
    return None


def test_backups_fresh(primary: Target) -> None:
    """Last pgBackRest full backup under 8 days old, last backup of any kind under 26 hours"""
    bk = _bk(primary)
    problem = backups_problem(_pgbackrest_info(primary, bk), bk, time.time())
    assert problem is None, problem


def test_logical_dump_fresh(primary: Target) -> None:
    """Last pg_dump (checked with pg_restore --list) under 26 hours old"""
    bk = _bk(primary)
    # HA mode: the dump is on whichever member led when it ran; the newest counts.
    holders = ha.members() or (primary,)
    found = {}
    for target in holders:
        status = target.host.file(f"{bk.status_dir}/dump.json")
        if status.exists:
            found[target.name] = json.loads(status.content_string).get("last_success_timestamp")
    where = ", ".join(t.name for t in holders)
    assert found, f"no dump has run yet ({bk.status_dir}/dump.json is missing on {where})"
    last = max((t for t in found.values() if t), default=None)
    assert last, "no dump has succeeded yet (see journalctl -u bgdb-dump)"
    assert time.time() - last <= ANY_MAX_AGE, \
        f"last good dump is {_age(time.time() - last)} old (timer bgdb-dump)"


def test_timers_enabled(primary: Target) -> None:
    """Backup and maintenance timers are enabled and scheduled"""
    # One report line for the set (the report's host column stays clean).
    wrong = timer_problems(primary, _timers(_bk(primary)))
    assert not wrong, "; ".join(wrong) + " (systemctl list-timers 'bgdb-*')"


def test_scheduled_jobs_not_failing(primary: Target) -> None:
    """No backup or maintenance job failed on its last run"""
    bk = _bk(primary)
    failed = failed_jobs(primary, bk.status_dir, _timers(bk))
    assert not failed, "failed jobs (journalctl -u bgdb-<job>): " + "; ".join(failed)


def test_backup_host_jobs(backup_host: Target) -> None:
    """The backup host's backup timers are enabled and none of its jobs failed last time"""
    bk = _bk(backup_host)
    wrong = []
    for unit in REPO_HOST_BACKUP_TIMERS:
        timer = backup_host.host.service(f"{unit}.timer")
        if not timer.is_enabled or not timer.is_running:
            wrong.append(f"{unit}.timer is not enabled and active")
        f = backup_host.host.file(f"{bk.status_dir}/{unit.removeprefix('bgdb-')}.json")
        if f.exists:
            status = json.loads(f.content_string)
            if not status.get("ok"):
                wrong.append(f"{status.get('job')} failed at {status.get('finished_at')}: "
                             f"{status.get('message')}")
    assert not wrong, "; ".join(wrong) + f" on the backup host {backup_host.name} " \
        "(systemctl list-timers 'bgdb-*'; journalctl -u bgdb-<job>)"
