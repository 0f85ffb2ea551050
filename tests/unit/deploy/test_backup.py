"""Backup and maintenance settings, the archive settings merged into the drop-in, the rendered
pgBackRest configuration and job units, and the deploy's decisions (plain data, no hosts)."""

from __future__ import annotations

import hashlib

import pytest

from deploy import backup, maintenance
from deploy.render import render
from deploy.settings import (
    AppSettings,
    BackupSettings,
    Data,
    SettingsError,
    app_settings,
    backup_settings,
    maintenance_settings,
    postgres_settings,
)

BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"], "postgres_version": 15}


def settings(**extra: object) -> tuple[BackupSettings, AppSettings]:
    data = Data({**BASE, **extra}, env={})
    return backup_settings(data), app_settings(data)


def test_defaults_follow_the_seed() -> None:
    bk, _ = settings()
    assert (bk.stanza, bk.repo_path, bk.retention_days, bk.encrypt) == \
        ("bgdb", "/var/lib/pgbackrest", 30, True)
    assert bk.status_file == "/var/lib/bgdb/status/backup.json"
    mt = maintenance_settings(Data(BASE, env={}))
    assert (mt.retention_days, mt.premake_days, mt.long_query_seconds) == (30, 14, 300)


@pytest.mark.parametrize(("key", "value", "says"), [
    ("backup_full_schedule", "Sun; rm -rf /", "OnCalendar"),
    ("backup_dump_dir", "relative/dir", "absolute path"),
    ("backup_dump_dir", "/var/../etc", "absolute path"),
    ("backup_retention_days", 0, "integer 1-3650"),
    ("backup_stanza", "Bad Name", "identifier"),
    ("backup_repo_encrypt", "yes", "True or False"),
    ("backup_compress", "xz", "one of"),
])
def test_bad_backup_values_are_refused(key: str, value: object, says: str) -> None:
    with pytest.raises(SettingsError, match=says) as err:
        settings(**{key: value})
    assert err.value.key == key


@pytest.mark.parametrize("guc", ["archive_command", "archive_mode", "archive_timeout"])
def test_archive_settings_cannot_be_overridden(guc: str) -> None:
    # archive_command = '/bin/true' would silently break the WAL chain.
    with pytest.raises(SettingsError, match="backup_"):
        settings(postgres_overrides={guc: "/bin/true"})


def test_bad_maintenance_value_is_refused() -> None:
    with pytest.raises(SettingsError, match="maintenance_premake_days"):
        maintenance_settings(Data({**BASE, "maintenance_premake_days": 0}, env={}))


def test_archive_config() -> None:
    bk, _ = settings(backup_archive_timeout=120)
    conf = backup.archive_config(bk, {"wal_level": "minimal"})
    assert conf == {"wal_level": "replica", "archive_mode": "on",
                    "archive_command": "pgbackrest --stanza=bgdb archive-push %p",
                    "archive_timeout": "120s"}
    assert backup.archive_config(bk, {"wal_level": "logical"})["wal_level"] == "logical"


def test_pgbackrest_conf_encrypted_with_time_retention() -> None:
    bk, _ = settings()
    pg = postgres_settings(Data(BASE, env={}))
    text = backup.pgbackrest_conf(bk, pg, "s3cret")
    lines = text.splitlines()
    for line in ("repo1-path=/var/lib/pgbackrest", "repo1-retention-full-type=time",
                 "repo1-retention-full=30", "repo1-cipher-type=aes-256-cbc",
                 "repo1-cipher-pass=s3cret", "archive-async=y", "[bgdb]",
                 "pg1-path=/var/lib/postgresql/15/main", "pg1-port=5432"):
        assert line in lines, line


def test_pgbackrest_conf_plain_and_elsewhere() -> None:
    bk, _ = settings(backup_repo_encrypt=False, backup_archive_async=False)
    pg = postgres_settings(Data(BASE, env={}))
    text = backup.pgbackrest_conf(bk, pg, None, repo_path="/srv/copy", pg_path="/srv/data")
    assert "cipher" not in text
    assert "repo1-path=/srv/copy" in text.splitlines()
    assert "pg1-path=/srv/data" in text.splitlines()
    assert "archive-async=n" in text.splitlines()


def test_jobs_and_their_units() -> None:
    bk, app = settings()
    data = Data(BASE, env={})
    pg = postgres_settings(data)
    jobs = backup.backup_jobs(bk, pg, app) + maintenance.maintenance_jobs(
        maintenance_settings(data), bk, pg, app)
    assert [j.unit for j in jobs] == [
        "bgdb-backup-full", "bgdb-backup-diff", "bgdb-backup-verify", "bgdb-dump",
        "bgdb-maintenance-daily", "bgdb-maintenance-weekly", "bgdb-maintenance-monthly"]
    full = jobs[0]
    assert full.command.endswith("backup --stanza bgdb --type full")
    assert "--name backup-full --status-dir /var/lib/bgdb/status --port 5432 --database " \
        "background_agents" in full.command
    weekly = jobs[5]
    assert weekly.command.endswith("sql --file /usr/local/lib/bgdb/sql/maintenance/weekly.sql "
                                   "--var retention_days=30 --var premake_days=14 "
                                   "--var long_query_seconds=300")
    service = render("bgdb-job.service.j2", job=full, after="postgresql@15-main.service")
    assert "User=postgres" in service and "Type=oneshot" in service
    assert f"ExecStart={full.command}" in service
    assert "Wants=" not in service  # a job never starts PostgreSQL during a restore
    timer = render("bgdb-job.timer.j2", job=full)
    assert "OnCalendar=Sun *-*-* 01:00:00" in timer and "Persistent=true" in timer
    assert "Unit=bgdb-backup-full.service" in timer


def test_key_conflict() -> None:
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    assert not backup._key_conflict(None, "k")  # no configuration yet
    assert not backup._key_conflict((digest("k"), True), "k")
    assert not backup._key_conflict((digest("old"), False), "k")  # no repository to lose
    assert backup._key_conflict((digest("old"), True), "k")
    assert backup._key_conflict((digest(""), True), "k")  # was unencrypted
    assert backup._key_conflict((digest("k"), True), None)  # would be unencrypted


def test_pgbackrest_info_reading() -> None:
    missing = [{"name": "bgdb", "db": [], "backup": [], "status": {"code": 1}}]
    empty = [{"name": "bgdb", "db": [{"id": 1}], "backup": [], "status": {"code": 2}}]
    failed = [{"name": "bgdb", "db": [{"id": 1}], "backup": [{"error": True}]}]
    good = [{"name": "bgdb", "db": [{"id": 1}], "backup": [{"error": False}]}]
    assert [backup._stanza_exists(i) for i in (None, missing, empty, good)] == \
        [False, False, True, True]
    assert [backup._has_backup(i) for i in (None, empty, failed, good)] == \
        [False, False, False, True]
    fact = backup.PgbackrestInfo()
    assert fact.process(["null"]) is None
    assert fact.process(['[{"name": "bgdb",', '"db": []}]']) == [{"name": "bgdb", "db": []}]
