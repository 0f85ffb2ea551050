"""Streaming read replicas of the primary: the hosts of group `postgres_replicas`.

On the primary: the replication role `bgdb_replicator` (SCRAM, password from the secrets
directory), a physical slot per replica (the primary keeps the WAL a replica has not received yet,
so a replica that was down catches up), and slots of replicas gone from the inventory dropped
only when `postgres_drop_orphan_slots` is set (until then the alert on inactive slots fires).
pg_hba (`hostssl replication` for the replica addresses) and the firewall are rendered by
deploy/postgres.py from the same list.

On a replica: the same packages, tuning, TLS, pg_hba and firewall as the primary
(deploy/postgres.py's pieces); the data is a `pg_basebackup` of the primary over TLS
(verify-full), streamed through its slot, then `standby.signal`; `conf.d/bgdb-replica.conf` holds
primary_conninfo (a passfile, no password) and primary_slot_name. The copy is taken only when the
data directory is fresh, or when `postgres_replica_reclone` is set and the host is not a
streaming standby: a second deploy never copies a running replica again. (pgBackRest would not
load the primary, but its repository is local to the primary, out of a replica's reach; with a
shared repository host, `pgbackrest restore --type=standby` would replace pg_basebackup here.)

Ordering: pyinfra runs hosts' operations interleaved. Every replica operation that needs the
primary comes after `wait_for_primary()`, one operation that the primary and the replicas share,
which pyinfra therefore runs after everything the primary does before it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FactBase, deploy, operation
from pyinfra.api.exceptions import OperationError
from pyinfra.facts.files import File
from pyinfra.operations import server

from deploy import backup, hostfacts, jobs, maintenance, pgsql, postgres, secrets, uploads
from deploy.render import render
from deploy.settings import (
    REPLICATION_USER,
    SLOT_PREFIX,
    AppSettings,
    Data,
    PostgresSettings,
    ReplicaSettings,
    app_settings,
    backup_settings,
    maintenance_settings,
    replication_slot_name,
)

PASSFILE = "/etc/bgdb/replication.pgpass"
DROP_IN = "conf.d/bgdb-replica.conf"
CLONE_PENDING = "bgdb-clone-pending"  # in the conf dir: cluster created, copy not finished yet
# A hot standby refuses to run recovery with any of these below its primary's value; defaults
# are PostgreSQL's, for a side that does not set one.
STANDBY_FLOORS = {"max_connections": 100, "max_worker_processes": 8, "max_wal_senders": 10,
                  "max_prepared_transactions": 0, "max_locks_per_transaction": 64}
# Operations of the first phase whose change the second phase applies (reload/restart), by host.
_CHANGED: dict[str, list[Any]] = {}


@dataclass(frozen=True)
class Member:
    name: str
    address: str
    port: int


@dataclass(frozen=True)
class Topology:
    primary: Member
    replicas: tuple[Member, ...]

    def peers_of(self, name: str) -> list[str]:
        """Addresses of every other database host: who may stream from `name` after a
        promotion (pg_hba replication lines, firewall)."""
        return [m.address for m in (self.primary, *self.replicas) if m.name != name]


# --- pure pieces (also used by bgdb.promote and the checks) --------------------------------------

def primary_conninfo(primary_address: str, port: int, slot: str) -> str:
    """libpq connection string of a replica to its primary: TLS with the bundle's CA and the
    host name checked, SCRAM bound to the TLS channel, the password in a passfile."""
    return (f"host={primary_address} port={port} user={REPLICATION_USER} passfile={PASSFILE} "
            f"sslmode=verify-full sslrootcert={postgres.CA_PATH} channel_binding=require "
            f"application_name={slot} connect_timeout=10")


def replica_conf(primary: Member, replica_name: str, rs: ReplicaSettings) -> str:
    """conf.d/bgdb-replica.conf of `replica_name` streaming from `primary`."""
    slot = replication_slot_name(replica_name)
    return render("bgdb-replica.conf.j2", primary_name=primary.name,
                  conninfo=primary_conninfo(primary.address, primary.port, slot), slot=slot,
                  rs=rs)


def passfile_line(password: str) -> str:
    """Any host and port (the primary may change), replication connections of the
    replication role only."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:replication:{REPLICATION_USER}:{escaped}\n"


def standby_floor(own: Mapping[str, str], primary: Mapping[str, str]) -> dict[str, str]:
    """`own` with the settings a hot standby needs raised to the primary's values."""
    conf = dict(own)
    for name, default in STANDBY_FLOORS.items():
        theirs = int(primary.get(name, default))
        if theirs > int(conf.get(name, default)):
            conf[name] = str(theirs)
    return conf


def clone_decision(data: str, server: str, reclone: bool) -> str:
    """'clone', 'keep' or 'refuse' for a replica host, from StandbyState.

    data: empty (no cluster), pending (created, copy not finished), standby (standby.signal),
    other (a cluster that is not a standby: a former primary, a restore); server: 'down' or
    '<in recovery t|f>,<WAL receiver status>'."""
    if data in ("empty", "pending"):
        return "clone"
    if server == "t,streaming":
        return "keep"  # never copy a running, streaming replica again
    if reclone:
        return "clone"
    if data == "standby":
        return "keep"  # down or not streaming (primary restarting?): the checks say so
    return "refuse"


def orphan_slots(slots: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The deploy's slots (bgdb_ prefix) that no replica in the inventory uses."""
    return sorted(s for s in slots if s.startswith(SLOT_PREFIX) and s not in wanted)


# --- facts and operations ------------------------------------------------------------------------

class StandbyState(FactBase[tuple[str, str]]):
    """(data directory state, server state) for clone_decision."""

    def command(self, data_dir: str, marker: str, port: int) -> str:
        sock = f"/var/run/postgresql/.s.PGSQL.{port}"
        query = ("SELECT CASE WHEN pg_is_in_recovery() THEN 't' ELSE 'f' END || ',' || "
                 "coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')")
        return (f"if [ ! -f {data_dir}/PG_VERSION ]; then echo empty; "
                f"elif [ -f {marker} ]; then echo pending; "
                f"elif [ -f {data_dir}/standby.signal ]; then echo standby; else echo other; fi; "
                f"if [ -S {sock} ]; then {pgsql.psql(query, port=port)} 2>/dev/null "
                f"|| echo down; else echo down; fi")

    def process(self, output: list[str]) -> tuple[str, str]:
        return (output[0] if output else "empty", output[1] if len(output) > 1 else "down")


@operation()
def clone_from_primary(pg: PostgresSettings, conninfo: str, slot: str, reclone: bool,
                       primary_name: str):
    """Copy the primary into the data directory, as a standby, when clone_decision says so."""
    marker = f"{pg.conf_dir}/{CLONE_PENDING}"
    data, server_state = host.get_fact(StandbyState, data_dir=pg.data_dir, marker=marker,
                                       port=pg.port)
    decision = clone_decision(data, server_state, reclone)
    if decision == "keep":
        return
    if decision == "refuse":
        raise OperationError(
            f"{pg.data_dir} holds a PostgreSQL cluster that is not a standby (server: "
            f"{server_state}); set postgres_replica_reclone=True for this host to replace it "
            f"with a copy of {primary_name}")
    basebackup = shlex.join(["pg_basebackup", f"--pgdata={pg.data_dir}", "--wal-method=stream",
                             f"--slot={slot}", "--checkpoint=fast", "--no-password",
                             f"--dbname={conninfo}"])
    # Before anything is deleted: the primary answers and holds this replica's slot (when the
    # primary's part of the deploy failed, there is none, and pg_basebackup would fail only
    # after the data directory was emptied).
    probe = shlex.join(["psql", "-XAtw", f"{conninfo} dbname=replication replication=true", "-c",
                        f"READ_REPLICATION_SLOT {slot}"])
    missing = (f"{primary_name} has no replication slot {slot} (did its part of the deploy "
               f"fail?); {pg.data_dir} left as it is")
    # unmask: bgdb.promote masks a fenced former primary's unit.
    yield (f"set -e; slot_type=$(runuser -u postgres -- {probe}); "
           f'[ "${{slot_type%%|*}}" = physical ] || '
           f"{{ echo {shlex.quote(missing)} >&2; exit 1; }}; "
           f"systemctl unmask {pg.unit}; systemctl stop {pg.unit}; "
           f"touch {marker}; find {pg.data_dir} -mindepth 1 -delete; "
           f"runuser -u postgres -- {basebackup}; "
           f"runuser -u postgres -- touch {pg.data_dir}/standby.signal; rm -f {marker}")


@operation()
def physical_slot(slot: str, port: int = 5432):
    """Create the slot if missing; recreate one PostgreSQL invalidated (wal_status 'lost',
    beyond max_slot_wal_keep_size), whose replica then needs a new copy anyway."""
    found = pgsql.rows(f"SELECT wal_status, active FROM pg_replication_slots WHERE slot_name = "
                       f"{pgsql.literal(slot)}", port=port)
    create = f"SELECT pg_create_physical_replication_slot({pgsql.literal(slot)}, true)"
    if not found:
        yield pgsql.psql(create, port=port)
    elif found[0] == ["lost", "f"]:
        yield pgsql.psql(f"SELECT pg_drop_replication_slot({pgsql.literal(slot)})", port=port)
        yield pgsql.psql(create, port=port)


class SlotNames(FactBase[list[str]]):
    """Physical replication slots on the server (empty when it is down)."""

    def command(self, port: int) -> str:
        query = "SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical'"
        return f"{pgsql.psql(query, port=port)} 2>/dev/null || true"

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line]


@operation()
def drop_orphan_slots(wanted: list[str], port: int = 5432):
    """Drop the deploy's slots no replica uses any more (a walsender still attached is ended
    first; pg_hba no longer lets that replica in)."""
    slots: list[str] = host.get_fact(SlotNames, port=port)
    for slot in orphan_slots(slots, wanted):
        lit = pgsql.literal(slot)
        yield pgsql.psql(f"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                         f"WHERE slot_name = {lit} AND active_pid IS NOT NULL", port=port)
        yield pgsql.psql(f"SELECT pg_drop_replication_slot({lit})", port=port)


@operation()
def _shared_step():
    """No command: an operation the primary and the replicas share (see the module doc)."""
    yield from ()


# --- deploys -------------------------------------------------------------------------------------

@deploy("Configure replication on the primary")
def configure_primary(pg: PostgresSettings, rs: ReplicaSettings,
                      replica_names: list[str]) -> None:
    wanted = [replication_slot_name(n) for n in replica_names]
    if replica_names:
        pgsql.role(name=f"Create role {REPLICATION_USER}", role_name=REPLICATION_USER,
                   login=True, port=pg.port,
                   attributes=f"REPLICATION CONNECTION LIMIT {rs.replicator_connection_limit}")
        pgsql.role_password(name=f"Set the password of {REPLICATION_USER}",
                            role_name=REPLICATION_USER,
                            password=secrets.password(REPLICATION_USER), port=pg.port)
    for slot in wanted:
        physical_slot(name=f"Create replication slot {slot}", slot=slot, port=pg.port)
    if rs.drop_orphan_slots:
        drop_orphan_slots(name="Drop the slots of replicas gone from the inventory",
                          wanted=wanted, port=pg.port)
    else:
        slots: list[str] = host.get_fact(SlotNames, port=pg.port)
        orphans = orphan_slots(slots, wanted)
        if orphans:
            logger.warning(f"{host.name}: replication slots {', '.join(orphans)} belong to no "
                           "replica in the inventory and keep WAL on the primary; deploy with "
                           "postgres_drop_orphan_slots=True to drop them")


def wait_for_primary() -> None:
    """Call on the primary and on every replica, at one place in deploy.py (see module doc)."""
    _shared_step(name="Order the replicas' operations after the primary's")


def topology(primary: Any, replicas: Sequence[Any]) -> Topology:
    """From pyinfra hosts (name, data.service_address)."""
    def member(h: Any) -> Member:
        pg = hostfacts.host_postgres(h)
        return Member(h.name, str(h.data.get("service_address")), pg.port)

    return Topology(member(primary), tuple(member(h) for h in replicas))


@deploy("Prepare a PostgreSQL replica")
def prepare_replica(pg: PostgresSettings, app: AppSettings, rs: ReplicaSettings,
                    topo: Topology, primary_host: Any) -> None:
    """What needs no primary: packages, the cluster's configuration, TLS, tuned drop-in (raised
    to the primary's values where a standby must), pg_hba, passfile, replica drop-in."""
    postgres.install_packages(pg)
    marker = f"{pg.conf_dir}/{CLONE_PENDING}"
    server.shell(
        name=f"Create the configuration of cluster {pg.version}/{pg.cluster} (data: a copy of "
             "the primary)",
        commands=[f"{postgres.createcluster_command(pg)} && touch {marker}"],
        # The configuration, not PG_VERSION: a copy that failed leaves the configuration and an
        # empty data directory, which the copy below fills (pg_createcluster would refuse).
        _if=lambda: not host.get_fact(File, path=f"{pg.conf_dir}/postgresql.conf"),
    )
    primary_conf = hostfacts.tuned_config(hostfacts.host_postgres(primary_host),
                                          primary_host.get_fact(hostfacts.Facts))
    peers = topo.peers_of(host.name)
    changed = postgres.write_server_files(pg, app, peers,
                                          adjust=lambda conf: standby_floor(conf, primary_conf))
    changed.append(uploads.put(
        name="Write the replication passfile",
        src=StringIO(passfile_line(secrets.password(REPLICATION_USER))),
        dest=PASSFILE, user="postgres", group="postgres", mode="0600", create_remote_dir=True))
    changed.append(uploads.put(
        name="Write the replica drop-in (primary_conninfo, slot)",
        src=StringIO(replica_conf(topo.primary, host.name, rs)),
        dest=f"{pg.conf_dir}/{DROP_IN}", user="postgres", group="postgres", mode="0644"))
    _CHANGED[host.name] = changed


@deploy("Start the PostgreSQL replica")
def start_replica(pg: PostgresSettings, rs: ReplicaSettings, topo: Topology) -> None:
    """After wait_for_primary(): copy the primary if needed, start, apply changed files."""
    slot = replication_slot_name(host.name)
    clone_from_primary(name=f"Copy {topo.primary.name} with pg_basebackup (fresh replica only)",
                       pg=pg, conninfo=primary_conninfo(topo.primary.address, topo.primary.port,
                                                        slot),
                       slot=slot, reclone=rs.reclone, primary_name=topo.primary.name)
    postgres.run_server(pg, _CHANGED.pop(host.name, []), topo.peers_of(host.name))
    # A former primary rebuilt as a replica: its backup and maintenance jobs would fail here.
    data = Data(host.data.dict())
    bk, app = backup_settings(data), app_settings(data)
    timers = [f"{j.unit}.timer" for j in (
        *backup.backup_jobs(bk, pg, app),
        *maintenance.maintenance_jobs(maintenance_settings(data), bk, pg, app))]
    server.shell(name="Disable the primary's backup and maintenance timers (a former primary)",
                 commands=[f"systemctl disable --now {' '.join(timers)}"],
                 _if=lambda: bool(host.get_fact(jobs.EnabledUnits, units=timers)))

