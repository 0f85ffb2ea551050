"""`python -m bgdb.promote REPLICA`: make a replica the primary when the primary is lost, and
point the other replicas at it.

Steps (each prints one line):
1. The old primary must not be running as a primary (two primaries would each take writes):
   a running one is refused unless --force, which stops it first. When its host answers over
   SSH, its PostgreSQL unit is stopped and masked (fenced), so a reboot cannot bring it back.
2. The chosen replica replays all the WAL it received; a replica that received more than the
   chosen one is refused unless --force (the others could not follow a replica behind them).
3. On the chosen replica, still a standby: a slot for each other replica (same names as the
   deploy's), so the WAL they need is kept from the start.
4. pg_promote() on the chosen replica, then a CHECKPOINT (pg_control on the new timeline, which
   pgBackRest needs to back it up); its replica drop-in is removed.
5. The other replicas get the replica drop-in the deploy would render for the new primary and
   reload (primary_conninfo is reloadable); they follow it onto its new timeline, and the
   command waits until each one streams from it.

What can be lost: replication is asynchronous. A transaction the old primary acknowledged
(synchronous_commit = on: flushed to its own disk) reaches the replicas a moment later. A clean
stop of the old primary sends every WAL record to connected replicas before it exits, so
nothing is lost; after a crash or a lost network, the transactions of the last moment (the lag,
usually milliseconds, bounded by bgdb_pg_replication_lag_bytes) may be missing on the replicas.
Zero loss needs synchronous replication (synchronous_standby_names via postgres_overrides), which
makes every commit wait for a replica.

Afterwards, update the inventory (the promoted host into postgres_primary, the old primary out,
or into postgres_replicas with postgres_replica_reclone=True to rebuild it as a replica) and
deploy: backups, maintenance timers and the replicas' slots follow the new primary.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bgdb import patroni
from bgdb.remote import Target
from bgdb.targets import OperatorError, reach
from deploy import replica
from deploy.hostdata import InventoryHost, load_inventory
from deploy.pgsql import literal
from deploy.secrets import SecretError
from deploy.settings import (
    Data,
    SettingsError,
    replica_settings,
    replication_slot_name,
)


@dataclass(frozen=True)
class Position:
    in_recovery: bool
    received: int  # pg_last_wal_receive_lsn() as a number (0: none)
    replayed: int


def lsn(text: str) -> int:
    """'16/B374D848' -> its 64-bit value; '' (NULL) -> 0."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def ahead_of(chosen: str, positions: dict[str, Position]) -> list[str]:
    """Replicas that received more WAL than `chosen` (they could not follow it)."""
    mine = positions[chosen].received
    return sorted(n for n, p in positions.items() if n != chosen and p.received > mine)


def _sql(t: Target, query: str) -> str:
    return t.value(query, database="postgres")


def _position(t: Target) -> Position:
    row = t.sql("SELECT pg_is_in_recovery(), coalesce(pg_last_wal_receive_lsn()::text, ''), "
                "coalesce(pg_last_wal_replay_lsn()::text, '')", database="postgres")[0]
    return Position(row[0] == "t", lsn(row[1]), lsn(row[2]))


def _wait(what: str, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise OperatorError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.5)


def _write_root_file(t: Target, path: str, content: str) -> None:
    """Replace `path` atomically, owned by postgres, mode 0644."""
    tmp = f"{path}.bgdb-tmp"
    out = t.host.run(f"printf %s {shlex.quote(content)} > {tmp} && chown postgres:postgres {tmp}"
                     f" && chmod 0644 {tmp} && mv {tmp} {path}")
    if out.rc != 0:
        raise OperatorError(f"{t.name}: could not write {path}: {out.stderr.strip()}")


def _run(t: Target, command: str) -> None:
    out = t.host.run(command)
    if out.rc != 0:
        raise OperatorError(f"{t.name}: `{command}` failed: {out.stderr.strip()}")


def _fence(old: InventoryHost, force: bool, say: Callable[[str], None]) -> None:
    """Step 1: refuse while the old primary runs as a primary; stop and mask it if reachable."""
    try:
        t = reach(old)
    except OperatorError:
        say(f"old primary {old.name}: unreachable over SSH (lost): not fenced; keep it off the "
            "network until it is rebuilt")
        return
    unit = t.pg.unit
    running = t.host.run(f"systemctl is-active --quiet {unit}").rc == 0
    if running:
        in_recovery = t.host.run(
            "runuser -u postgres -- psql -XAtq -d postgres -c 'SELECT pg_is_in_recovery()'")
        if in_recovery.stdout.strip() == "f" and not force:
            raise OperatorError(f"the primary {old.name} is running: promoting now would make "
                                f"two primaries. Stop it (systemctl stop {unit}) or pass --force "
                                "to stop it here")
    _run(t, f"systemctl mask --now {unit}")
    say(f"old primary {old.name}: PostgreSQL stopped and its unit {unit} masked (fenced)")


def promote(name: str, *, force: bool = False, timeout: float = 60.0,
            inventory: Sequence[InventoryHost] | None = None,
            say: Callable[[str], None] = print) -> None:
    hosts = list(load_inventory() if inventory is None else inventory)
    replicas = [h for h in hosts if "postgres_replicas" in h.groups]
    chosen = next((h for h in replicas if name in (h.name, h.address)), None)
    if chosen is None:
        known = ", ".join(h.name for h in replicas) or "none"
        raise OperatorError(f"{name!r} is not a replica in the inventory (replicas: {known})")
    others = [h for h in replicas if h is not chosen]
    new = reach(chosen)
    if not _position(new).in_recovery:
        raise OperatorError(f"{chosen.name} is not in recovery: it is a primary already")
    for old in (h for h in hosts if "postgres_primary" in h.groups):
        _fence(old, force, say)

    followers: dict[str, Target] = {}
    for h in others:
        try:
            followers[h.name] = reach(h)
        except OperatorError as exc:
            say(f"replica {h.name}: skipped ({exc}); rebuild it later with "
                "postgres_replica_reclone=True")

    def replayed_all() -> bool:
        p = _position(new)
        return p.replayed >= p.received
    _wait(f"{chosen.name} replayed the WAL it received", replayed_all, timeout)
    positions = {chosen.name: _position(new)}
    positions.update({n: _position(t) for n, t in followers.items()})
    ahead = ahead_of(chosen.name, positions)
    if ahead and not force:
        raise OperatorError(f"{', '.join(ahead)} received more WAL than {chosen.name}: promote "
                            f"that one instead (or pass --force and rebuild {', '.join(ahead)})")
    say(f"{chosen.name}: replayed all WAL it received, up to "
        f"{format_lsn(positions[chosen.name].replayed)}")

    for n in followers:
        slot = literal(replication_slot_name(n))
        _sql(new, f"SELECT pg_create_physical_replication_slot({slot}, true) WHERE NOT EXISTS "
                  f"(SELECT 1 FROM pg_replication_slots WHERE slot_name = {slot})")
    if followers:
        say(f"{chosen.name}: slots for {', '.join(followers)} created")

    promoted = _sql(new, f"SELECT pg_promote(true, {int(timeout)})")
    if promoted != "t" or _sql(new, "SELECT pg_is_in_recovery()") != "f":
        raise OperatorError(f"{chosen.name}: pg_promote() did not finish within {timeout:.0f} s; "
                            f"see journalctl -u {new.pg.unit}")
    # PostgreSQL only requests a spread checkpoint after a promotion: until it ends, pg_control
    # names the old timeline and pgBackRest refuses every backup ("WAL timeline 2 does not
    # match pg_control timeline 1"). Checkpoint now, so backups work from here on.
    _sql(new, "CHECKPOINT")
    timeline = _sql(new, "SELECT timeline_id FROM pg_control_checkpoint()")
    _run(new, f"rm -f {new.pg.conf_dir}/{replica.DROP_IN}")
    _sql(new, "SELECT pg_reload_conf()")
    say(f"{chosen.name}: promoted, now the primary (writable), checkpointed on timeline "
        f"{timeline}")

    head = replica.Member(chosen.name, chosen.address, new.pg.port)
    for n, t in followers.items():
        conf = replica.replica_conf(head, n, replica_settings(Data(t.inv.data)))
        _write_root_file(t, f"{t.pg.conf_dir}/{replica.DROP_IN}", conf)
        _sql(t, "SELECT pg_reload_conf()")

    def streams_from_new(t: Target) -> Callable[[], bool]:
        return lambda: _sql(t, "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = "
                               f"'streaming' AND sender_host = {literal(chosen.address)}"
                            ) == "1"
    for n, t in followers.items():
        _wait(f"{n} streams from {chosen.name}", streams_from_new(t), timeout)
        say(f"{n}: streaming from {chosen.name}")
    say(f"done. Now put {chosen.name} into postgres_primary in the inventory (and the old primary "
        "out, or into postgres_replicas with postgres_replica_reclone=True) and deploy.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bgdb promote", description="Promote a replica to primary and point the other "
        "replicas at it (see the module docstring for what asynchronous replication can lose).")
    parser.add_argument("replica", help="inventory name or address of the replica to promote")
    parser.add_argument("--force", action="store_true",
                        help="stop a still-running primary first; promote even if another "
                        "replica received more WAL")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for each step (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        if patroni.members():
            print("bgdb promote: HA mode (postgres_ha): Patroni promotes a standby by itself "
                  "when the leader fails; for a planned change use `bgdb switchover [--to "
                  "HOST]` (Patroni's switchover), never a promotion behind Patroni's back",
                  file=sys.stderr)
            return 1
        promote(args.replica, force=args.force, timeout=args.timeout)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (OperatorError, SecretError, AssertionError) as exc:
        print(f"bgdb promote: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
