"""WAL archiving and backups with pgBackRest, and a daily logical dump, as systemd timers.

archive_command hands each WAL segment to `pgbackrest archive-push`, which returns 0 only once
the segment is stored in the repository (never `cp` without fsync, never /bin/true). The deploy
creates the stanza, proves with `pgbackrest check` that a segment reaches the repository, and
takes the first full backup, so a fresh host is restorable to any point from the first deploy on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server

from deploy import jobs, pgsql, secrets
from deploy.render import render
from deploy.settings import AppSettings, BackupSettings, PostgresSettings

CONF_DIR = "/etc/pgbackrest"
CONF = f"{CONF_DIR}/pgbackrest.conf"  # pgBackRest's default; the package's /etc/pgbackrest.conf
SPOOL = "/var/spool/pgbackrest"  # is then ignored
CIPHER_SECRET = "pgbackrest-cipher"


def archive_config(bk: BackupSettings, conf: Mapping[str, str]) -> dict[str, str]:
    """What the server's drop-in needs for archiving (archive_mode needs a restart, which
    pgsql.apply_config does). wal_level stays 'logical' if an override asked for it."""
    return {
        "wal_level": "logical" if conf.get("wal_level") == "logical" else "replica",
        "archive_mode": "on",
        "archive_command": f"pgbackrest --stanza={bk.stanza} archive-push %p",
        "archive_timeout": f"{bk.archive_timeout}s",
    }


def cipher_pass(bk: BackupSettings, *, generate: bool = True) -> str | None:
    """The repository key from the secrets directory (generated on the first deploy)."""
    return secrets.password(CIPHER_SECRET, generate=generate) if bk.encrypt else None


def pgbackrest_conf(bk: BackupSettings, pg: PostgresSettings, cipher: str | None,
                    *, repo_path: str | None = None, pg_path: str | None = None) -> str:
    """The configuration; restore.py renders it for another host with its own paths."""
    return render("pgbackrest.conf.j2", bk=bk, cipher_pass=cipher, spool_path=SPOOL,
                  pg_path=pg_path or pg.data_dir, pg_port=pg.port,
                  repo_path=repo_path or bk.repo_path)


def as_postgres(command: str) -> str:
    return f"runuser -u postgres -- {command}"


def backup_jobs(bk: BackupSettings, pg: PostgresSettings, app: AppSettings) -> list[jobs.Job]:
    def common(name: str) -> tuple[str, ...]:
        return jobs.common_args(name, bk.status_dir, pg.port, app.database)

    stanza = ("--stanza", bk.stanza)
    return [
        jobs.Job("bgdb-backup-full", "pgBackRest full backup", bk.full_schedule,
                 (*common("backup-full"), "backup", *stanza, "--type", "full"), timeout="24h"),
        jobs.Job("bgdb-backup-diff", "pgBackRest differential backup", bk.diff_schedule,
                 (*common("backup-diff"), "backup", *stanza, "--type", "diff"), timeout="24h"),
        jobs.Job("bgdb-backup-verify", "pgBackRest repository verification", bk.verify_schedule,
                 (*common("backup-verify"), "verify", *stanza), timeout="24h"),
        jobs.Job("bgdb-dump", "Logical dump (pg_dump, checked by pg_restore --list)",
                 bk.dump_schedule,
                 (*common("dump"), "dump", "--dir", bk.dump_dir, "--keep-days",
                  str(bk.dump_keep_days)), timeout="12h"),
    ]


@deploy("Configure WAL archiving and backups")
def configure_backup(bk: BackupSettings, pg: PostgresSettings, app: AppSettings) -> None:
    apt.packages(name="Install pgBackRest", packages=["pgbackrest"], cache_time=86400,
                 no_recommends=True)
    cipher = cipher_pass(bk)
    # Another key (or none) for a repository that already holds backups would make every backup
    # unreadable: stop before writing the configuration.
    server.shell(
        name="Refuse to change the encryption key of an existing repository",
        commands=[f"echo 'the repository {bk.repo_path} was created with another encryption "
                  f"key (or none); put the key from {CONF} into .secrets/passwords/"
                  f"{CIPHER_SECRET}, or move the repository aside' >&2; exit 1"],
        _if=lambda: _key_conflict(host.get_fact(_RepoKey, conf=CONF, repo=bk.repo_path,
                                                stanza=bk.stanza), cipher),
    )
    files.directory(name="Create /etc/pgbackrest", path=CONF_DIR, user="root", group="postgres",
                    mode="0750")
    conf = files.put(name="Write the pgBackRest configuration",
                     src=StringIO(pgbackrest_conf(bk, pg, cipher)), dest=CONF, user="root",
                     group="postgres", mode="0640")
    for path in (bk.repo_path, SPOOL, "/var/log/pgbackrest"):
        files.directory(name=f"Create {path}", path=path, user="postgres", group="postgres",
                        mode="0750")
    files.directory(name="Create the dump directory", path=bk.dump_dir, user="postgres",
                    group="postgres", mode="0700")

    stanza = server.shell(
        name=f"Create the pgBackRest stanza {bk.stanza}",
        commands=[as_postgres(f"pgbackrest --stanza={bk.stanza} stanza-create")],
        _if=lambda: not _stanza_exists(host.get_fact(PgbackrestInfo, stanza=bk.stanza)),
    )
    # `check` forces a WAL switch and waits until the segment is in the repository.
    server.shell(
        name="Check that WAL reaches the repository (pgbackrest check)",
        commands=[as_postgres(f"pgbackrest --stanza={bk.stanza} check")],
        _if=lambda: conf.did_change() or stanza.did_change() or _archiver_failing(pg.port),
    )

    jobs.install_runner(bk.status_dir)
    for job in backup_jobs(bk, pg, app):
        jobs.install_timer(job, after=f"{pg.unit}.service")
    # A fresh host is restorable (and its readiness checks pass) from the first deploy on.
    server.shell(
        name="Take the first full backup",
        commands=["systemctl start bgdb-backup-full.service"],
        _if=lambda: not _has_backup(host.get_fact(PgbackrestInfo, stanza=bk.stanza)),
    )
    server.shell(
        name="Take the first logical dump",
        commands=["systemctl start bgdb-dump.service"],
        _if=lambda: host.get_fact(File, path=f"{bk.status_dir}/dump.json") is None,
    )


def _archiver_failing(port: int) -> bool:
    """The last archive attempt failed (pg_stat_archiver, which a crash or restore resets)."""
    found = pgsql.rows("SELECT last_failed_time IS NOT NULL AND (last_archived_time IS NULL "
                       "OR last_failed_time > last_archived_time) FROM pg_stat_archiver",
                       port=port)
    return bool(found and found[0] and found[0][0] == "t")


Info = list[dict[str, Any]]


def _stanza_exists(info: Info | None) -> bool:
    return bool(info and info[0].get("db"))


def _has_backup(info: Info | None) -> bool:
    return bool(info and any(not b.get("error") for b in info[0].get("backup") or []))


def _key_conflict(state: tuple[str, bool] | None, cipher: str | None) -> bool:
    if state is None:  # no configuration yet: nothing to compare with
        return False
    key_hash, repo_exists = state
    return repo_exists and key_hash != hashlib.sha256((cipher or "").encode()).hexdigest()


class PgbackrestInfo(FactBase[Info | None]):
    """`pgbackrest info --output=json` for the stanza, None when it cannot run."""

    def command(self, stanza: str) -> str:
        return (f"{as_postgres(f'pgbackrest --stanza={stanza} --output=json info')} "
                "2>/dev/null || echo null")

    def process(self, output: list[str]) -> Info | None:
        try:
            value = json.loads("\n".join(output))
        except ValueError:
            return None
        return value if isinstance(value, list) and value else None


class _RepoKey(FactBase[tuple[str, bool] | None]):
    """(sha256 of the repo1-cipher-pass in the configuration, repository holds the stanza), or
    None when there is no configuration. Only the hash leaves the host."""

    def command(self, conf: str, repo: str, stanza: str) -> str:
        return (f"if [ -f {conf} ]; then "
                f"sed -n 's/^repo1-cipher-pass=//p' {conf} | head -n1 | tr -d '\\n' | sha256sum"
                f" | cut -c1-64; test -f {repo}/backup/{stanza}/backup.info && echo yes "
                "|| echo no; else echo none; fi")

    def process(self, output: list[str]) -> tuple[str, bool] | None:
        if len(output) != 2:
            return None
        return output[0], output[1] == "yes"
