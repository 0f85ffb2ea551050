"""WAL archiving and backups with pgBackRest, and a daily logical dump, as systemd timers.

archive_command hands each WAL segment to `pgbackrest archive-push`, which returns 0 only once
the segment is stored in the repository (never `cp` without fsync, never /bin/true). The deploy
creates the stanza, proves with `pgbackrest check` that a segment reaches the repository, and
takes the first full backup, so a fresh host is restorable to any point from the first deploy on.

With a host in group `backup`, the repository lives there instead (pgBackRest's "repository
host" layout over SSH): the backup host runs the full/diff/verify timers and holds the encryption
key; the primary keeps archive-push (to the backup host), the dump, and a `bgdb-backup-info`
timer that records `pgbackrest info` for its exporter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from typing import Any, Literal

from pyinfra import host
from pyinfra.api import FactBase, Host, Inventory, deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from deploy import aptbatch, hostfacts, jobs, pgsql, secrets, uploads
from deploy.render import render
from deploy.settings import (
    AppSettings,
    BackupSettings,
    Data,
    PostgresSettings,
    app_settings,
    backup_settings,
    ha_settings,
)

CONF_DIR = "/etc/pgbackrest"
CONF = f"{CONF_DIR}/pgbackrest.conf"  # pgBackRest's default; the package's /etc/pgbackrest.conf
SPOOL = "/var/spool/pgbackrest"  # is then ignored
LOG = "/var/log/pgbackrest"
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
                    *, repo_path: str | None = None, pg_path: str | None = None,
                    repo_host: str | None = None, pg_hosts: Sequence[str] = ()) -> str:
    """The configuration: of the primary with a local repository (restore.py renders it for
    another host with its own paths), of the primary whose repository is on `repo_host`, or of
    the backup host that backs up `pg_hosts` (the primary, or every HA member)."""
    return render("pgbackrest.conf.j2", bk=bk, cipher_pass=cipher, spool_path=SPOOL,
                  pg_path=pg_path or pg.data_dir, pg_port=pg.port,
                  repo_path=repo_path or bk.repo_path, repo_host=repo_host,
                  pg_hosts=list(pg_hosts))


def as_postgres(command: str) -> str:
    return as_user("postgres", command)


def as_user(user: str, command: str) -> str:
    return f"runuser -u {user} -- {command}"


# Where this host stands in the repository layout: `local` = the primary with its own
# repository (no backup host in the inventory); `db` = the primary whose repository is on the
# backup host; `repo` = that backup host (pgBackRest's "repository host" layout: it runs the
# backups, reaching the primary over SSH; the primary's archive-push reaches it the same way).
Side = Literal["local", "db", "repo"]


@dataclass(frozen=True)
class Peer:
    """The other end of the SSH link: the backup host for `db`; for `repo`, the primary, or
    every member in HA mode (pgBackRest's pg1..pgN hosts: it backs up from a standby and
    finds the leader itself). `host_key`: its SSH host keys, pinned in known_hosts."""
    name: str
    address: str
    host_key: str


def side_of(groups: Iterable[str], bk: BackupSettings) -> Side:
    if "backup" in groups:
        return "repo"
    return "db" if bk.repo_host else "local"


def backup_jobs(bk: BackupSettings, pg: PostgresSettings, app: AppSettings,
                side: Side | None = None) -> list[jobs.Job]:
    """The timers of this side; by default those of the primary (`local` or `db`)."""
    side = side or ("db" if bk.repo_host else "local")

    def common(name: str) -> tuple[str, ...]:
        args = jobs.common_args(name, bk.status_dir, pg.port, app.database)
        return (*args, "--repo-host") if side == "repo" else args

    stanza = ("--stanza", bk.stanza)
    user = bk.repo_host_user if side == "repo" else "postgres"
    backups = [
        jobs.Job("bgdb-backup-full", "pgBackRest full backup", bk.full_schedule,
                 (*common("backup-full"), "backup", *stanza, "--type", "full"), timeout="24h",
                 user=user),
        jobs.Job("bgdb-backup-diff", "pgBackRest differential backup", bk.diff_schedule,
                 (*common("backup-diff"), "backup", *stanza, "--type", "diff"), timeout="24h",
                 user=user),
        jobs.Job("bgdb-backup-verify", "pgBackRest repository verification", bk.verify_schedule,
                 (*common("backup-verify"), "verify", *stanza), timeout="24h", user=user),
    ]
    dump = jobs.Job("bgdb-dump", "Logical dump (pg_dump, checked by pg_restore --list)",
                    bk.dump_schedule,
                    (*common("dump"), "dump", "--dir", bk.dump_dir, "--keep-days",
                     str(bk.dump_keep_days)), timeout="12h")
    if side == "local":
        return [*backups, dump]
    if side == "repo":
        return backups
    port = ("--ssh-port", str(bk.ssh_port)) if bk.ssh_port != 22 else ()
    info = jobs.Job("bgdb-backup-info", "Repository state for the exporter (pgbackrest info)",
                    bk.info_schedule,
                    (*common("backup-info"), "info", *stanza, "--repo-status",
                     f"{bk.repo_host_user}@{bk.repo_host}:{bk.status_file}", *port),
                    timeout="10min")
    return [dump, info]


def ssh_home(side: Side, bk: BackupSettings) -> tuple[str, str]:
    """(user, home) whose ~/.ssh holds the link's key: postgres on the primary, the repository
    user on the backup host."""
    if side == "repo":
        return bk.repo_host_user, f"/home/{bk.repo_host_user}"
    return "postgres", "/var/lib/postgresql"


def known_hosts_line(address: str, port: int, host_keys: str) -> str:
    where = address if port == 22 else f"[{address}]:{port}"
    return "".join(f"{where} {key}\n" for key in host_keys.splitlines())


def authorized_keys_line(public_key: str, *peer_addresses: str) -> str:
    # Only from the peers, no forwarding, pty or agent: pgBackRest runs its commands over exec.
    return f'from="{",".join(peer_addresses)}",restrict {public_key}\n'


@deploy("Configure WAL archiving and backups")
def configure_backup(bk: BackupSettings, pg: PostgresSettings, app: AppSettings,
                     side: Side = "local", peers: Sequence[Peer] = (),
                     leads: Callable[[], bool] | None = None, bootstrap: bool = True) -> None:
    """One sequence for both ends of the repository: deploy.py calls it from one place for the
    primary and the backup host, so pyinfra runs each step on both before the next (the backup
    host's stanza-create after the primary's configuration, the primary's check after the
    stanza, the backup host's first backup after the check).

    HA mode: every member is a `db` side; `leads` says (when operations run) whether this one
    leads now: only the leader checks archiving; the first dump is taken once, by the bootstrap
    host while it leads (a later leader's timer takes the next one, so a deploy after a
    failover changes nothing)."""
    owner = bk.repo_host_user if side == "repo" else "postgres"
    aptbatch.install(name="Install pgBackRest", packages=["pgbackrest"] + (
        ["openssh-client"] if side != "local" else []), update=True, cache_time=86400,
        no_recommends=True)
    if side == "repo":
        server.user(name=f"Create the repository user {owner}", user=owner, system=True,
                    home=f"/home/{owner}", ensure_home=True, shell="/bin/sh")
    if side != "local":
        assert peers, f"a {side} side needs its SSH peers"
        _ssh_link(side, bk, peers)
    # Only the repository's host holds the key.
    cipher = cipher_pass(bk) if side != "db" else None
    # Another key (or none) for a repository that already holds backups would make every backup
    # unreadable: stop before writing the configuration.
    if side != "db":
        server.shell(
            name="Refuse to change the encryption key of an existing repository",
            commands=[f"echo 'the repository {bk.repo_path} was created with another encryption "
                      f"key (or none); put the key from {CONF} into .secrets/passwords/"
                      f"{CIPHER_SECRET}, or move the repository aside' >&2; exit 1"],
            _if=lambda: _key_conflict(host.get_fact(_RepoKey, conf=CONF, repo=bk.repo_path,
                                                    stanza=bk.stanza), cipher),
        )
    files.directory(name="Create /etc/pgbackrest", path=CONF_DIR, user="root", group=owner,
                    mode="0750")
    text = pgbackrest_conf(bk, pg, cipher,
                           repo_host=peers[0].address if side == "db" else None,
                           pg_hosts=[p.address for p in peers] if side == "repo" else ())
    conf = uploads.put(name="Write the pgBackRest configuration", src=StringIO(text), dest=CONF,
                       user="root", group=owner, mode="0640")
    dirs = {"local": (bk.repo_path, SPOOL, LOG), "db": (SPOOL, LOG), "repo": (bk.repo_path, LOG)}
    for path in dirs[side]:
        files.directory(name=f"Create {path}", path=path, user=owner, group=owner, mode="0750")
    if side != "repo":
        files.directory(name="Create the dump directory", path=bk.dump_dir, user="postgres",
                        group="postgres", mode="0700")

    stanza = None
    if side != "db":
        stanza = server.shell(
            name=f"Create the pgBackRest stanza {bk.stanza}",
            commands=[as_user(owner, f"pgbackrest --stanza={bk.stanza} stanza-create")],
            _if=lambda: not _stanza_exists(host.get_fact(PgbackrestInfo, stanza=bk.stanza,
                                                         user=owner)),
        )
    # `check` forces a WAL switch and waits until the segment is in the repository.
    if side != "repo":
        server.shell(
            name="Check that WAL reaches the repository (pgbackrest check)",
            commands=[as_postgres(f"pgbackrest --stanza={bk.stanza} check")],
            _if=lambda: (leads is None or leads()) and (
                conf.did_change() or bool(stanza and stanza.did_change())
                or _archiver_failing(pg.port)),
        )

    jobs.install_runner(bk.status_dir, user=owner)
    # A fresh host is restorable (and its readiness checks pass) from the first deploy on. The
    # first runs call the runner as the timers' services would (same arguments, user, umask),
    # before the timer loop: steps the two hosts share must stay out of loops, whose length
    # differs per host, for pyinfra to keep them in this order (backup, then its record).
    by_unit = {j.unit: j for j in backup_jobs(bk, pg, app, side)}
    if side != "db":
        server.shell(
            name="Take the first full backup",
            commands=[_first_run(by_unit["bgdb-backup-full"])],
            _if=lambda: not _has_backup(host.get_fact(PgbackrestInfo, stanza=bk.stanza,
                                                      user=owner)),
        )
    if side != "repo":
        server.shell(
            name="Take the first logical dump",
            commands=[_first_run(by_unit["bgdb-dump"])],
            _if=lambda: bootstrap and (leads is None or leads())
            and host.get_fact(File, path=f"{bk.status_dir}/dump.json") is None,
        )
    if side == "db":
        server.shell(
            name="Record the repository's state for the exporter",
            commands=[_first_run(by_unit["bgdb-backup-info"])],
            _if=lambda: host.get_fact(File, path=f"{bk.status_dir}/backup-info.json") is None,
        )
    after = "network-online.target" if side == "repo" else f"{pg.unit}.service"
    jobs.install_timers(by_unit.values(), after=after, what="backup")
    if side == "db":
        # A primary that had its own repository before the backup host came: its backup
        # timers would now fail daily (pgBackRest backs up from the repository host only).
        moved = [f"{j.unit}.timer" for j in backup_jobs(bk, pg, app, "repo")]
        server.shell(name="Disable the primary's own backup timers (the backup host runs them)",
                     commands=[f"systemctl disable --now {' '.join(moved)}"],
                     _if=lambda: bool(host.get_fact(jobs.EnabledUnits, units=moved)))


def _first_run(job: jobs.Job) -> str:
    return f"umask 077 && {as_user(job.user, job.command)}"


def takes_part(this: Host, ha: bool) -> bool:
    """The hosts of the backup layout: the primary (in HA mode every member) and the backup
    host."""
    groups = set(this.groups)
    return bool({"postgres_primary", "backup"} & groups or ha and "postgres_replicas" in groups)


def setup_for(this: Host, inventory: Inventory) -> tuple[
        BackupSettings, PostgresSettings, AppSettings, Side, list[Peer]]:
    """configure_backup's arguments for the primary (or an HA member) or the backup host. All
    use the primary's settings (the stanza, schedules and paths belong to its cluster); each
    end gets the other's addresses and SSH host keys, read over the deploy's own connections."""
    primary = inventory.get_group("postgres_primary")[0]
    data = Data(primary.data.dict())
    bk, pg, app = backup_settings(data), hostfacts.host_postgres(primary), app_settings(data)
    side = side_of(this.groups, bk)
    if side == "local":
        return bk, pg, app, side, []
    if side == "db":
        others = [inventory.get_group("backup")[0]]
    elif ha_settings(data).enabled:
        others = [primary, *inventory.get_group("postgres_replicas", [])]
    else:
        others = [primary]
    peers = []
    for other in others:
        key = other.get_fact(SshHostKey)
        if key is None:
            raise DeployError(f"{other.name} has no /etc/ssh/ssh_host_*_key.pub to pin")
        peers.append(Peer(other.name, str(other.data.get("service_address")), key))
    return bk, pg, app, side, peers


def _ssh_link(side: Side, bk: BackupSettings, peers: Sequence[Peer]) -> None:
    """This end of the passwordless SSH link between postgres on the primary (every HA member:
    they share the `db` key pair) and the repository user on the backup host: its own key pair
    (generated into the secrets directory), the peers' public key as the only authorized key
    (from their addresses only), and their host keys pinned in known_hosts (read by the deploy
    over its own verified connections, never accepted on first use)."""
    user, home = ssh_home(side, bk)
    private, _ = secrets.ssh_keypair(f"pgbackrest-{side}")
    _, peer_public = secrets.ssh_keypair(f"pgbackrest-{'repo' if side == 'db' else 'db'}")
    files.directory(name=f"Create {home}/.ssh", path=f"{home}/.ssh", user=user, group=user,
                    mode="0700")
    uploads.put(name="Install this host's pgBackRest SSH key", src=StringIO(private),
                dest=f"{home}/.ssh/id_ed25519", user=user, group=user, mode="0600")
    names = ", ".join(p.name for p in peers)
    uploads.put(name=f"Authorize the pgBackRest SSH key of {names}",
                src=StringIO(authorized_keys_line(peer_public, *(p.address for p in peers))),
                dest=f"{home}/.ssh/authorized_keys", user=user, group=user, mode="0600")
    uploads.put(name=f"Pin the SSH host keys of {names}",
                src=StringIO("".join(known_hosts_line(p.address, bk.ssh_port, p.host_key)
                                     for p in peers)),
                dest=f"{home}/.ssh/known_hosts", user=user, group=user, mode="0644")


class SshHostKey(FactBase[str | None]):
    """The host's SSH host keys, one "type AAAA..." per line, None when it has none. All of
    them: ssh's UpdateHostKeys would otherwise append the others to known_hosts on first use,
    and the next deploy would see a changed file."""

    def command(self) -> str:
        return "cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        keys = [" ".join(line.split()[:2]) for line in output if len(line.split()) >= 2]
        return "\n".join(keys) or None


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

    def command(self, stanza: str, user: str = "postgres") -> str:
        return (f"{as_user(user, f'pgbackrest --stanza={stanza} --output=json info')} "
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
