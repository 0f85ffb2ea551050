"""Restore the agents' PostgreSQL cluster from its pgBackRest repository.

    python -m bgdb.restore [--time '2026-01-31 12:00:00+00'] [--from HOST] [--to HOST]
                           [--delta] [--yes]

Without --time: the latest backup plus every archived WAL segment (the last committed
transactions). With --time: the state at that moment (point-in-time recovery; pgBackRest picks
the newest backup taken before it), then promotion to a new timeline.

--from is the host whose repository is used (default: the inventory's postgres_primary; in HA
mode the member that leads now); --to is the host restored onto (default: the same host, in
place; in HA mode a spare host is required: Patroni owns the members). In place, PostgreSQL is
stopped, the data directory is moved aside to <data_dir>.before-restore-<time> (--delta
restores over it instead, reusing unchanged files), restored, started, and archiving goes on
into the same repository on the new timeline. Onto another host (a spare, or one to inspect an
old state), the repository is copied there through this machine's SSH connections, PostgreSQL
and pgBackRest are installed if missing, and archiving is switched off on the restored copy so
it never writes into a repository that is not its own.

With a backup host (inventory group `backup`), an in-place restore reads its repository over
the primary's SSH link to it, and a restore onto another host copies the repository from it.

Hosts come from the inventory (names or addresses, as `bgdb check` uses them); the encryption key
from the secrets directory. Exit status: 0 restored, 1 failed, 2 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bgdb import patroni
from bgdb.remote import Target
from deploy import backup
from deploy.hostdata import InventoryHost, load_inventory
from deploy.secrets import SecretError
from deploy.settings import (
    AppSettings,
    BackupSettings,
    Data,
    PostgresSettings,
    SettingsError,
    app_settings,
    backup_settings,
    postgres_settings,
)

RESTORE_REPO_ROOT = "/var/lib/pgbackrest-restore"  # copies of other hosts' repositories
RECORD = "restore-drill.json"  # in the source's backup_status_dir; checks/test_evidence.py reads it


class RestoreError(RuntimeError):
    pass


@dataclass(frozen=True)
class Plan:
    source: InventoryHost
    target: InventoryHost
    pg: PostgresSettings
    bk: BackupSettings
    target_time: str | None
    delta: bool
    repo_holder: InventoryHost  # the host whose disk holds the repository: source or backup host
    app: AppSettings

    @property
    def in_place(self) -> bool:
        return self.source.name == self.target.name

    @property
    def repo_path(self) -> str:
        """The repository as seen from the target host."""
        if self.in_place:
            return self.bk.repo_path
        return f"{RESTORE_REPO_ROOT}/{self.source.name}"

    @property
    def config(self) -> str:
        if self.in_place:
            return backup.CONF
        return f"{backup.CONF_DIR}/restore-from-{self.source.name}.conf"

    def pgbackrest_restore(self) -> list[str]:
        cmd = ["pgbackrest", f"--config={self.config}", f"--stanza={self.bk.stanza}"]
        if self.delta:
            cmd.append("--delta")
        if self.target_time:
            cmd += ["--type=time", f"--target={self.target_time}", "--target-action=promote"]
        if not self.in_place:
            cmd.append("--archive-mode=off")
        return [*cmd, "restore"]

    def describe(self) -> str:
        what = f"the state at {self.target_time}" if self.target_time else "the latest state"
        where = "in place" if self.in_place else f"onto {self.target.name} ({self.target.address})"
        return (f"restore {what} of {self.source.name}'s cluster {self.pg.version}/"
                f"{self.pg.cluster} (stanza {self.bk.stanza}, repository {self.bk.repo_path}) "
                f"{where}")


def parse_time(value: str) -> str:
    """An ISO-8601 time with a zone, normalised for recovery_target_time."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RestoreError(f"--time {value!r}: expected e.g. '2026-01-31 12:00:00+00'") from None
    if parsed.tzinfo is None:
        raise RestoreError(f"--time {value!r}: give a time zone, e.g. +00 for UTC")
    return parsed.astimezone(UTC).isoformat(sep=" ")


def find_host(hosts: Sequence[InventoryHost], name: str) -> InventoryHost:
    for h in hosts:
        if name in (h.name, h.address):
            return h
    raise RestoreError(f"no host {name!r} in the inventory ({', '.join(h.name for h in hosts)})")


def make_plan(hosts: Sequence[InventoryHost], source: str | None, target: str | None,
              target_time: str | None, delta: bool, leader: str | None = None) -> Plan:
    """`leader`: in HA mode, the member that leads now (Patroni's answer): the default source,
    whose WAL is pushed first and which keeps the record."""
    primaries = [h for h in hosts if "postgres_primary" in h.groups]
    ha = bool(patroni.members(hosts))
    if source:
        src = find_host(hosts, source)
    elif ha:
        if leader is None:
            raise RestoreError("HA mode: no member leads now (bgdb status); name the source "
                               "with --from")
        src = find_host(hosts, leader)
    else:
        if not primaries:
            raise RestoreError("no host in group postgres_primary: name one with --from")
        src = primaries[0]
    dst = find_host(hosts, target) if target else src
    if ha and patroni.DB_GROUPS & set(dst.groups):
        # Patroni owns the members' PostgreSQL: a restore under it would race its restarts,
        # and a replaced member rejoins by cloning the leader anyway.
        raise RestoreError(f"HA mode: {dst.name} is a Patroni member; restore onto a spare "
                           "host (--to), never in place")
    if dst.name != src.name and "postgres_primary" in dst.groups:
        raise RestoreError(f"{dst.name} is a deployed primary with its own repository: restore "
                           "onto a spare host, or in place on it")
    data = Data(src.data)
    if "backup" in dst.groups:
        raise RestoreError(f"{dst.name} is the backup host: restore onto a database host")
    bk = backup_settings(data)
    # With a backup host, that is where the repository is copied from (bk.repo_path there).
    holder = next((h for h in hosts if "backup" in h.groups), src) if bk.repo_host else src
    pg = postgres_settings(data)
    if dst.name != src.name:  # a copy is plain PostgreSQL (postgresql@), never a Patroni member
        pg = dataclasses.replace(pg, ha=False)
    return Plan(src, dst, pg, bk,
                parse_time(target_time) if target_time else None, delta, holder,
                app_settings(data))


# --- remote execution ------------------------------------------------------------------------

def ssh_command(h: InventoryHost) -> list[str]:
    d = h.data
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR",
           "-p", str(d.get("ssh_port", 22))]
    if d.get("ssh_key"):
        cmd += ["-i", str(d["ssh_key"])]
    if d.get("ssh_known_hosts_file"):
        cmd += ["-o", f"UserKnownHostsFile={d['ssh_known_hosts_file']}",
                "-o", "StrictHostKeyChecking=yes"]
    return [*cmd, f"{d.get('ssh_user', 'root')}@{h.address}"]


def root(h: InventoryHost, command: str) -> list[str]:
    """ssh argv running `command` as root on h (sudo for a non-root SSH user)."""
    prefix = "sudo -n " if h.data.get("_sudo") else ""
    return [*ssh_command(h), f"{prefix}bash -c {shlex.quote(command)}"]


def remote(h: InventoryHost, what: str, script: str, *, input_text: str | None = None) -> None:
    say(f"[{h.name}] {what}")
    proc = subprocess.run(root(h, "set -euo pipefail\ncd /\n" + script), input=input_text,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RestoreError(f"{h.name}: could not {what} (exit {proc.returncode})")


def say(message: str) -> None:
    print(message, flush=True)


# --- the steps -------------------------------------------------------------------------------

def push_latest_wal(plan: Plan) -> None:
    """Best effort: archive the WAL of the last commits first (a switch, waited for)."""
    cmd = backup.as_postgres(f"pgbackrest --stanza={plan.bk.stanza} check")
    proc = subprocess.run(root(plan.source, cmd), text=True, capture_output=True, check=False)
    if proc.returncode == 0:
        say(f"[{plan.source.name}] current WAL archived")
    else:
        say(f"[{plan.source.name}] could not archive the current WAL (is PostgreSQL down?); "
            "restoring up to the last archived segment")


def prepare_other_host(plan: Plan, cipher: str | None) -> None:
    pg, target = plan.pg, plan.target
    remote(target, "install PostgreSQL and pgBackRest if missing, prepare the directories", f"""
if ! command -v pgbackrest >/dev/null || [ ! -x /usr/lib/postgresql/{pg.version}/bin/postgres ]
then
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/bgdb.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends postgresql-{pg.version} pgbackrest >/dev/null
fi
if [ ! -f {pg.conf_dir}/postgresql.conf ]; then
    # Only for its configuration and service: the restore replaces the new data directory.
    pg_createcluster {pg.version} {pg.cluster} --port {pg.port} --locale {pg.locale} >/dev/null
    rm -rf {pg.data_dir}
fi
rm -rf {plan.repo_path}
install -d -o postgres -g postgres -m 0750 {RESTORE_REPO_ROOT} {plan.repo_path}
install -d -o root -g postgres -m 0750 {backup.CONF_DIR}
install -d -o postgres -g postgres -m 0750 {backup.SPOOL}
""")
    conf = backup.pgbackrest_conf(plan.bk, pg, cipher, repo_path=plan.repo_path,
                                  pg_path=pg.data_dir)
    remote(target, f"write {plan.config}",
           f"install -o root -g postgres -m 0640 /dev/stdin {plan.config}", input_text=conf)
    say(f"copying the repository {plan.bk.repo_path} from {plan.repo_holder.name} to "
        f"{target.name}:{plan.repo_path}")
    reader = subprocess.Popen(root(plan.repo_holder, f"tar -C {plan.bk.repo_path} -cf - ."),
                              stdout=subprocess.PIPE)
    writer = subprocess.run(root(target, f"tar -C {plan.repo_path} -xf - && "
                                 f"chown -R postgres:postgres {plan.repo_path}"),
                            stdin=reader.stdout, check=False)
    if reader.stdout:
        reader.stdout.close()
    if reader.wait() != 0 or writer.returncode != 0:
        raise RestoreError("copying the repository failed")


def restore(plan: Plan) -> None:
    pg = plan.pg
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = f"{pg.data_dir}.before-restore-{stamp}"
    keep = "true" if plan.delta else "false"
    remote(plan.target, "stop PostgreSQL, restore, start and wait for the end of recovery", f"""
systemctl stop {pg.unit}
if [ -d {pg.data_dir} ] && [ -n "$(ls -A {pg.data_dir})" ] && ! {keep}; then
    mv {pg.data_dir} {aside}
    echo "the old data directory is now {aside} (delete it once the restore is accepted)"
fi
install -d -o postgres -g postgres -m 0700 {pg.data_dir}
runuser -u postgres -- {shlex.join(plan.pgbackrest_restore())}
{"" if plan.in_place else _match_source_limits(pg)}
systemctl start {pg.unit}
for _ in $(seq 1 600); do
    r=$(runuser -u postgres -- psql -XAtq -p {pg.port} -c 'SELECT pg_is_in_recovery()' \
        2>/dev/null || true)
    [ "$r" = f ] && break
    sleep 1
done
if [ "$r" != f ]; then
    echo "PostgreSQL has not finished recovery after 10 minutes: see /var/log/postgresql" >&2
    exit 1
fi
# The recovery settings pgBackRest wrote are spent: keep postgresql.auto.conf clean.
for name in restore_command recovery_target_time recovery_target_action; do
    runuser -u postgres -- psql -XAtq -p {pg.port} -c "ALTER SYSTEM RESET $name"
done
runuser -u postgres -- psql -XAtq -p {pg.port} -c 'SELECT pg_reload_conf()' >/dev/null
""")


def _match_source_limits(pg: PostgresSettings) -> str:
    """Recovery refuses to run with a lower max_connections (etc.) than the source had: take the
    source's values from the restored pg_control into a drop-in on the other host."""
    names = {"max_connections": "max_connections", "max_worker_processes":
             "max_worker_processes", "max_wal_senders": "max_wal_senders",
             "max_prepared_xacts": "max_prepared_transactions",
             "max_locks_per_xact": "max_locks_per_transaction"}
    awk = " ".join(f'/^{key} setting:/ {{print "{guc} = " $2}}' for key, guc in names.items())
    return (f"/usr/lib/postgresql/{pg.version}/bin/pg_controldata {pg.data_dir} "
            f"| awk -F': *' {shlex.quote(awk)} > {pg.conf_dir}/conf.d/bgdb-restore.conf")


# --- the record: what proves a restore was tested (checks/test_evidence.py) -----------------

# Every table of the application database (partitions through their parent), counted: the
# restored database answers, and what it holds is recorded.
COUNT_SQL = """
SELECT coalesce(json_object_agg(t, n), '{}') FROM (
  SELECT format('%I.%I', s.nspname, c.relname) AS t,
         (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I',
                                                     s.nspname, c.relname), false, true, '')
         ))[1]::text::bigint AS n
  FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
    AND s.nspname NOT IN ('pg_catalog', 'information_schema') AND s.nspname NOT LIKE 'pg_toast%'
) x"""


def capture(h: InventoryHost, command: str) -> str:
    proc = subprocess.run(root(h, command), text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RestoreError(f"{h.name}: {command.split()[0]} failed: {proc.stderr.strip()[:500]}")
    return proc.stdout


def verify(plan: Plan) -> tuple[str, dict[str, int]]:
    """The backup set pgBackRest restored (from its log on the target) and the row count of
    every table of the application database on the restored cluster."""
    log = f"/var/log/pgbackrest/{plan.bk.stanza}-restore.log"
    label = capture(plan.target, f"grep -o 'restore backup set [^ ,]*' {log} | tail -n1 || true")
    sql = shlex.quote(COUNT_SQL)
    counts = capture(plan.target, f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 "
                                  f"-p {plan.pg.port} -d {plan.app.database} -c {sql}")
    try:
        tables = {str(k): int(v) for k, v in json.loads(counts).items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise RestoreError(f"{plan.target.name}: unexpected row counts {counts[:200]!r}") from exc
    if not tables:
        raise RestoreError(f"{plan.target.name}: the restored database {plan.app.database} has "
                           "no tables")
    return label.strip().rpartition(" ")[2], tables


def make_record(previous: object, plan: Plan, *, ok: bool, started: datetime,
                finished: datetime, message: str, label: str | None = None,
                tables: dict[str, int] | None = None) -> dict[str, object]:
    """This attempt; `last_success` is this one if it succeeded, else the previous record's."""
    record: dict[str, object] = {
        "job": "restore", "ok": ok, "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "duration_seconds": round((finished - started).total_seconds(), 1),
        "message": message[:2000], "source": plan.source.name, "target": plan.target.name,
        "in_place": plan.in_place, "target_time": plan.target_time, "delta": plan.delta,
        "backup_label": label, "database": plan.app.database,
        "rows_verified": sum(tables.values()) if tables else 0, "tables": tables or {},
    }
    if ok:
        record["last_success"] = {k: record[k] for k in (
            "finished_at", "source", "target", "in_place", "target_time", "backup_label",
            "database", "rows_verified")}
    else:
        last = previous.get("last_success") if isinstance(previous, dict) else None
        record["last_success"] = last if isinstance(last, dict) else None
    return record


def write_record(plan: Plan, *, ok: bool, started: datetime, message: str,
                 label: str | None = None, tables: dict[str, int] | None = None) -> None:
    """On the source host, beside the backup jobs' status: the repository's restores."""
    path = f"{plan.bk.status_dir}/{RECORD}"
    previous: object = None
    with contextlib.suppress(RestoreError, ValueError):
        previous = json.loads(capture(plan.source, f"cat {path} 2>/dev/null || echo null"))
    record = make_record(previous, plan, ok=ok, started=started, finished=datetime.now(UTC),
                         message=message, label=label, tables=tables)
    remote(plan.source, f"record the restore in {path}",
           f"install -d -m 0755 {plan.bk.status_dir} && install -m 0644 /dev/stdin {path}",
           input_text=json.dumps(record, indent=1, sort_keys=True) + "\n")


def run(plan: Plan, cipher: str | None) -> None:
    started = time.monotonic()
    started_at = datetime.now(UTC)
    say(plan.describe())
    try:
        if not plan.target_time:
            push_latest_wal(plan)
        if not plan.in_place:
            prepare_other_host(plan, cipher)
        restore(plan)
        label, tables = verify(plan)
    except RestoreError as exc:
        with contextlib.suppress(RestoreError):
            write_record(plan, ok=False, started=started_at, message=str(exc))
        raise
    say(f"[{plan.target.name}] backup set {label or '(not in the log)'} restored; "
        f"{sum(tables.values())} rows in {len(tables)} tables of {plan.app.database}")
    write_record(plan, ok=True, started=started_at, message="restored", label=label,
                 tables=tables)
    say(f"restored in {time.monotonic() - started:.0f}s: {plan.target.name} is out of recovery"
        + ("; take a full backup now: systemctl start bgdb-backup-full.service"
           if plan.in_place else ""))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bgdb.restore",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", dest="target_time",
                    help="restore the state at this time (ISO 8601 with a zone); default: latest")
    ap.add_argument("--from", dest="source", help="host whose repository is used (default: "
                    "the postgres_primary)")
    ap.add_argument("--to", dest="target", help="host to restore onto (default: --from, in place)")
    ap.add_argument("--delta", action="store_true",
                    help="restore over the existing data directory instead of moving it aside")
    ap.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    args = ap.parse_args(argv)
    try:
        hosts = load_inventory()
        members = patroni.members(hosts)
        leader = patroni.leader_name(patroni.first_view(members)) if members else None
        plan = make_plan(hosts, args.source, args.target, args.target_time, args.delta, leader)
        if plan.pg.version is None:  # the distribution's default: the source host decides
            plan = dataclasses.replace(plan, pg=dataclasses.replace(
                Target(plan.source).pg, ha=plan.pg.ha))
        cipher = backup.cipher_pass(plan.bk, generate=False)
    except (RestoreError, SettingsError, SecretError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if not args.yes:
        say(plan.describe() + ".\nPostgreSQL on the target is stopped during the restore.")
        answer = input(f"type the target host's name ({plan.target.name}) to go on: ")
        if answer.strip() != plan.target.name:
            print("not confirmed; nothing done", file=sys.stderr)
            return 2
    try:
        run(plan, cipher)
    except RestoreError as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
