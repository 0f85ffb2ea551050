"""The repository on a dedicated backup host (inventory group `backup`), with real pgBackRest.

A lab of its own with two hosts only (the primary and the backup host), so the default session's
3-host lab keeps its local repository: the stanza lives on the backup host, WAL reaches it from
the primary, its timer's full backup lands there, the primary's exporter still sees the backup
state, a second deploy changes nothing, and `bgdb restore` brings the primary back from it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from deploy.runner import run_deploy
from sandbox import hosts as sandbox_hosts
from tests.integration.deploy.backup_helpers import (
    DATA_DIR,
    REPO,
    STATUS_DIR,
    UNIT,
    must,
    restore_command,
    sql,
    ssh,
)
from tests.sandbox_fixtures import LAB, Deployed, admin_dsn, booted_lab

REPO_PATH = "/var/lib/pgbackrest"


@pytest.fixture(scope="module")
def lab() -> Iterator[Deployed]:
    # A third, plain host to restore onto (a spare): not deployed, PostgreSQL installed by the
    # restore command.
    specs = [sandbox_hosts.HostSpec("db1", ("postgres_primary", "monitoring")),
             sandbox_hosts.HostSpec("bk", ("backup",)), sandbox_hosts.HostSpec("spare")]
    with booted_lab(LAB, specs) as booted:
        env = {"BGDB_LAB": booted.name}
        started = time.monotonic()
        result = run_deploy(env)
        print(f"first deploy with a backup host: {result.describe()}, "
              f"{time.monotonic() - started:.0f}s")
        if result.returncode != 0 or result.errors:
            (booted.dir / "first-deploy.log").write_text(result.output)
            pytest.fail(f"first deploy failed ({result.describe()}):\n"
                        f"{result.output[-8000:]}")
        yield Deployed(booted, result, env)


def backup_host(lab: Deployed) -> str:
    return next(h.address for h in lab.lab.hosts if "backup" in h.groups)


def repo_info(lab: Deployed) -> dict[str, Any]:
    out = must(lab, "runuser -u pgbackrest -- pgbackrest --stanza=bgdb --output=json info",
               host=backup_host(lab))
    return dict(json.loads(out)[0])


def test_stanza_and_key_live_on_the_backup_host(lab: Deployed) -> None:
    bk = backup_host(lab)
    stanza = repo_info(lab)
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert stanza["cipher"] == "aes-256-cbc"
    assert any(b["type"] == "full" for b in stanza["backup"]), stanza["backup"]
    assert "Configure WAL archiving and backups | Take the first full backup" in lab.first.changed
    # The repository and the key are on the backup host, readable by its pgbackrest user only.
    assert must(lab, f"stat -c '%a %U %G' {REPO_PATH} /etc/pgbackrest/pgbackrest.conf "
                     f"/home/pgbackrest/.ssh/id_ed25519", host=bk).split() == \
        ["750", "pgbackrest", "pgbackrest", "640", "root", "pgbackrest",
         "600", "pgbackrest", "pgbackrest"]
    assert must(lab, "grep -c '^repo1-cipher-pass=' /etc/pgbackrest/pgbackrest.conf",
                host=bk).strip() == "1"
    # The primary keeps no repository and no key, only the link to the backup host.
    primary_conf = must(lab, "cat /etc/pgbackrest/pgbackrest.conf")
    assert "cipher-pass" not in primary_conf
    assert f"repo1-host={bk}" in primary_conf
    assert ssh(lab, f"test -e {REPO_PATH}/backup").returncode != 0
    assert must(lab, "stat -c '%a %U' /var/lib/postgresql/.ssh/id_ed25519").split() == \
        ["600", "postgres"]
    # Host keys pinned by the deploy; nothing relaxes host key checking.
    pinned = must(lab, "cat /var/lib/postgresql/.ssh/known_hosts").splitlines()
    assert f"{bk} ssh-ed25519" in [" ".join(line.split()[:2]) for line in pinned], pinned
    assert ssh(lab, "grep -rEi '^[^#]*StrictHostKeyChecking' /etc/ssh /var/lib/postgresql/.ssh "
                    "/etc/pgbackrest").returncode == 1


def test_check_passes_and_wal_lands_on_the_backup_host(lab: Deployed) -> None:
    must(lab, "runuser -u postgres -- pgbackrest --stanza=bgdb check")
    wal = sql(lab, "SELECT last_archived_wal FROM pg_stat_archiver", db="postgres")
    # A segment, or the backup history file of the first backup (…28.backup) if it came last.
    assert re.fullmatch(r"[0-9A-F]{24}(\.[0-9A-F]{8}\.backup)?", wal), wal
    found = must(lab, f"ls {REPO_PATH}/archive/bgdb/15-1/{wal[:16]}/ | grep -c '^{wal}'",
                 host=backup_host(lab))
    assert found.strip() == "1", f"{wal} not in the backup host's archive"


def test_second_deploy_changes_nothing(lab: Deployed) -> None:
    again = lab.deploy()
    assert again.returncode == 0 and not again.errors, again.output[-4000:]
    assert again.changed == [], again.changed
    print(f"second deploy: {again.describe()}")


def test_backup_host_timer_takes_the_backups(lab: Deployed) -> None:
    bk = backup_host(lab)
    before = {b["label"] for b in repo_info(lab)["backup"]}
    # The backup timers are on the backup host, not on the primary.
    assert must(lab, "systemctl is-enabled bgdb-backup-full.timer bgdb-backup-diff.timer "
                     "bgdb-backup-verify.timer", host=bk).split() == ["enabled"] * 3
    assert ssh(lab, "test -e /etc/systemd/system/bgdb-backup-full.timer").returncode == 1
    must(lab, "systemctl start bgdb-backup-full.service", host=bk, timeout=600)
    new = [b for b in repo_info(lab)["backup"] if b["label"] not in before]
    assert [b["type"] for b in new] == ["full"], new
    status = json.loads(must(lab, f"cat {STATUS_DIR}/backup-full.json", host=bk))
    assert status["ok"], status
    must(lab, "systemctl start bgdb-backup-verify.service", host=bk, timeout=600)


def test_exporter_sees_the_backup_hosts_state(lab: Deployed) -> None:
    must(lab, "systemctl start bgdb-backup-info.service")
    summary = json.loads(must(lab, f"cat {STATUS_DIR}/backup.json"))
    newest = max(b["timestamp"]["stop"] for b in summary["pgbackrest_info"][0]["backup"])
    assert summary["verify_ok"] is True
    url = f"http://{lab.primary.address}:9847/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in body.splitlines()
              if line.startswith(("bgdb_backup_last_full_timestamp_seconds ",
                                  "bgdb_backup_verify_last_ok "))}
    assert values.get("bgdb_backup_last_full_timestamp_seconds") == newest, values
    assert values.get("bgdb_backup_verify_last_ok") == 1.0, values


def run_checks(lab: Deployed, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The readiness checks of the backup items (`bgdb check`'s), on this lab."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "checks/test_backup.py", f"--readiness-report={tmp_path / 'readiness.md'}"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **lab.env})


def test_readiness_checks_pass_and_see_a_stopped_backup_timer(lab: Deployed,
                                                              tmp_path: Path) -> None:
    ok = run_checks(lab, tmp_path)
    assert ok.returncode == 0, ok.stdout[-3000:]
    rows = (tmp_path / "readiness.md").read_text()
    assert f"| The backup host's backup timers are enabled and none of its jobs failed last " \
           f"time | {lab.lab.name}-bk | PASSED |" in rows, rows
    assert "FAILED" not in rows and "SKIPPED" not in rows, rows
    bk = backup_host(lab)
    must(lab, "systemctl disable --now bgdb-backup-diff.timer", host=bk)
    try:
        broken = run_checks(lab, tmp_path)
        assert broken.returncode == 1, broken.stdout[-3000:]
        report = (tmp_path / "readiness.md").read_text()
        assert "bgdb-backup-diff.timer is not enabled and active" in report, report
        assert f"on the backup host {lab.lab.name}-bk" in report, report
    finally:
        must(lab, "systemctl enable --now bgdb-backup-diff.timer", host=bk)


def test_restore_from_the_backup_host(lab: Deployed) -> None:
    with psycopg.connect(admin_dsn(lab.primary.address), autocommit=True) as conn:
        conn.execute("CREATE TABLE bgdb_remote_drill AS SELECT 'kept'::text AS v")
    must(lab, "runuser -u postgres -- pgbackrest --stanza=bgdb check")  # its WAL is archived
    # The primary's data directory is lost: only the backup host's repository can bring it back.
    must(lab, f"kill -9 $(head -n1 {DATA_DIR}/postmaster.pid); sleep 1; "
              f"systemctl stop {UNIT}; rm -rf {DATA_DIR}")
    started = time.monotonic()
    out = restore_command(lab)
    assert out.returncode == 0, f"restore failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    print(f"restore from the backup host took {time.monotonic() - started:.1f}s")
    assert sql(lab, "SELECT v FROM bgdb_remote_drill", db="postgres") == "kept"
    assert sql(lab, "SELECT pg_is_in_recovery()") == "f"
    # Archiving to the backup host goes on after the restore.
    must(lab, "runuser -u postgres -- pgbackrest --stanza=bgdb check")


def test_restore_onto_a_spare_copies_the_backup_hosts_repository(lab: Deployed) -> None:
    spare = next(h for h in lab.lab.hosts if not h.groups)
    sql(lab, "CREATE TABLE bgdb_spare_marker AS SELECT 'latest'::text AS v", db="postgres")
    started = time.monotonic()
    out = restore_command(lab, "--to", spare.name)
    assert out.returncode == 0, f"restore failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    print(f"restore onto a spare from the backup host took {time.monotonic() - started:.1f}s")
    assert f"from {lab.lab.name}-bk to {spare.name}" in out.stdout, out.stdout[-1500:]
    assert sql(lab, "SELECT v FROM bgdb_spare_marker", db="postgres",
               host=spare.address) == "latest"
    assert sql(lab, "SHOW archive_mode", db="postgres", host=spare.address) == "off"
