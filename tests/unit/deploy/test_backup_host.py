"""The repository on a backup host: topology and settings checks, the two pgBackRest
configurations, each side's timers, and the SSH link's files (plain data, no hosts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy import backup, secrets
from deploy.settings import (
    Data,
    SettingsError,
    app_settings,
    backup_settings,
    check_backup_topology,
    postgres_settings,
)

REPO = Path(__file__).resolve().parents[3]
BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"], "postgres_version": 15,
        "backup_repo_host": "10.0.0.9"}


def both_sides(**extra: object) -> tuple[str, str]:
    data = Data({**BASE, **extra}, env={})
    bk, pg = backup_settings(data), postgres_settings(data)
    db = backup.pgbackrest_conf(bk, pg, None, repo_host="10.0.0.9")
    repo = backup.pgbackrest_conf(bk, pg, "KEY", pg_hosts=["10.0.0.5"])
    return db, repo


@pytest.mark.parametrize(("hosts", "message"), [
    ([("db", ["postgres_primary"]), ("b1", ["backup"]), ("b2", ["backup"])],
     "backup = ['b1', 'b2']: expected at most one backup host"),
    ([("db", ["postgres_primary", "backup"])],
     "groups of db = ['postgres_primary', 'backup']: a backup host holds the repository apart"),
    ([("db", ["postgres_primary"]), ("r", ["postgres_replicas", "backup"])],
     "groups of r = ['postgres_replicas', 'backup']"),
    ([("b1", ["backup"])], "backup = ['b1']: a backup host needs a host in postgres_primary"),
])
def test_topology_errors_name_key_and_value(hosts: list[tuple[str, list[str]]],
                                            message: str) -> None:
    with pytest.raises(SettingsError, match="settings error: ") as err:
        check_backup_topology(hosts)
    assert message in str(err.value)


def test_one_backup_host_is_fine() -> None:
    check_backup_topology([("db", ["postgres_primary"]), ("bk", ["backup"])])
    check_backup_topology([("db", ["postgres_primary"])])


@pytest.mark.parametrize(("key", "value"), [("backup_repo_host", "bad host!"),
                                            ("backup_repo_host_user", "Root"),
                                            ("backup_info_schedule", "every; day")])
def test_bad_backup_host_values_are_refused(key: str, value: object) -> None:
    with pytest.raises(SettingsError, match=f"settings error: {key} = "):
        backup_settings(Data({**BASE, key: value}, env={}))


def test_two_backup_hosts_stop_pyinfra_before_connecting(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.json"
    data = {"postgres_allowed_cidrs": ["10.0.0.0/24"]}
    hosts.write_text(json.dumps({"hosts": [
        {"name": "db", "address": "10.231.0.254", "groups": ["postgres_primary"], "data": data},
        {"name": "b1", "address": "10.231.0.253", "groups": ["backup"]},
        {"name": "b2", "address": "10.231.0.252", "groups": ["backup"]}]}))
    started = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).with_name("pyinfra")), "-y", "inventory.py",
                           "deploy.py"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "BGDB_HOSTS_FILE": str(hosts),
                               "BGDB_SECRETS_DIR": str(tmp_path / "secrets")})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "settings error: backup = ['b1', 'b2']: expected at most one backup host" \
        in proc.stderr
    assert "Connecting to hosts" not in proc.stdout
    assert time.monotonic() - started < 30


def test_inventory_points_every_host_at_the_backup_host(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy.hostdata import load_inventory

    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps({"hosts": [
        {"name": "db", "address": "10.0.0.5", "groups": ["postgres_primary"]},
        {"name": "bk", "address": "10.0.0.9", "groups": ["backup"]}]}))
    monkeypatch.setenv("BGDB_HOSTS_FILE", str(hosts))
    assert {h.name: h.data.get("backup_repo_host") for h in load_inventory()} == \
        {"db": "10.0.0.9", "bk": "10.0.0.9"}
    hosts.write_text(json.dumps({"hosts": [
        {"name": "db", "address": "10.0.0.5", "groups": ["postgres_primary"]}]}))
    assert [h.data.get("backup_repo_host") for h in load_inventory()] == [None]


def test_primary_config_points_at_the_repository_host_without_the_key() -> None:
    db, repo = both_sides()
    assert "repo1-host=10.0.0.9\nrepo1-host-user=pgbackrest\n" in db
    assert "cipher-pass" not in db and "repo1-path" not in db and "retention-full" not in db
    assert "archive-async=y" in db and "pg1-path=/var/lib/postgresql/15/main" in db
    assert "pg1-host" not in db and "port=22" not in db


def test_repository_host_config_backs_up_the_primary_with_the_key() -> None:
    _, repo = both_sides()
    assert "repo1-path=/var/lib/pgbackrest" in repo and "repo1-cipher-pass=KEY" in repo
    assert "repo1-retention-full=30" in repo and "start-fast=y" in repo
    assert "pg1-host=10.0.0.5\npg1-host-user=postgres\n" in repo
    assert "repo1-host" not in repo and "archive-async" not in repo


def test_non_default_ssh_port_on_both_ends() -> None:
    db, repo = both_sides(ssh_port=2222)
    assert "repo1-host-port=2222" in db and "pg1-host-port=2222" in repo
    assert backup.known_hosts_line("10.0.0.9", 2222, "ssh-ed25519 AAA\nssh-rsa BBB") == \
        "[10.0.0.9]:2222 ssh-ed25519 AAA\n[10.0.0.9]:2222 ssh-rsa BBB\n"
    assert backup.SshHostKey().process(["ssh-rsa BBB root@h", "ssh-ed25519 AAA root@h"]) == \
        "ssh-rsa BBB\nssh-ed25519 AAA"


def test_each_side_gets_its_own_timers() -> None:
    data = Data(BASE, env={})
    bk, pg, app = backup_settings(data), postgres_settings(data), app_settings(data)
    repo = backup.backup_jobs(bk, pg, app, "repo")
    assert [j.unit for j in repo] == ["bgdb-backup-full", "bgdb-backup-diff",
                                      "bgdb-backup-verify"]
    assert all(j.user == "pgbackrest" and "--repo-host" in j.args for j in repo)
    db = backup.backup_jobs(bk, pg, app)  # the primary's, with a backup host
    assert [j.unit for j in db] == ["bgdb-dump", "bgdb-backup-info"]
    assert all(j.user == "postgres" and "--repo-host" not in j.args for j in db)
    assert "pgbackrest@10.0.0.9:/var/lib/bgdb/status/backup.json" in db[1].args
    local = backup_settings(Data({"postgres_allowed_cidrs": ["10.0.0.0/24"]}, env={}))
    assert [j.unit for j in backup.backup_jobs(local, pg, app)] == [
        "bgdb-backup-full", "bgdb-backup-diff", "bgdb-backup-verify", "bgdb-dump"]


def test_ssh_link_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDB_SECRETS_DIR", str(tmp_path))
    private, public = secrets.ssh_keypair("pgbackrest-db")
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public.startswith("ssh-ed25519 ") and public.endswith(" bgdb-pgbackrest-db")
    assert secrets.ssh_keypair("pgbackrest-db") == (private, public)  # generated once
    assert (tmp_path / "ssh" / "pgbackrest-db").stat().st_mode & 0o777 == 0o600
    assert backup.authorized_keys_line(public, "10.0.0.5") == \
        f'from="10.0.0.5",restrict {public}\n'
