"""Read replicas: each one is a hot standby, streams from the primary over TLS through its slot,
and is not behind by more than the thresholds of its settings. Nothing to check (all skipped)
in an inventory without replicas."""

from __future__ import annotations

from functools import cache

import pytest

from bgdb.remote import Target
from checks import ha
from deploy.hostdata import load_inventory
from deploy.settings import Data, ReplicaSettings, replica_settings, replication_slot_name

# The replica's lag as the exporter computes it (sql/exporter/replica.sql): 0 when everything
# received is replayed, else the age of the last replayed transaction.
LAG = ("SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
       "ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END, "
       "coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)")


@cache
def _primary() -> Target | None:
    if ha.members():
        return ha.leader()  # HA mode: whoever leads now
    found = [Target(h) for h in load_inventory() if "postgres_primary" in h.groups]
    return found[0] if found else None


def _slot(replica: Target) -> str:
    return ha.slot_name(replica.name) if ha.members() else replication_slot_name(replica.name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "replica" in metafunc.fixturenames:
        if ha.members():
            leader = ha.leader()
            targets = [t for t in ha.members() if leader is None or t.name != leader.name]
        else:
            targets = [Target(h) for h in load_inventory() if "postgres_replicas" in h.groups]
        metafunc.parametrize("replica", targets, ids=[t.name for t in targets],
                             scope="session")


def _settings(t: Target) -> ReplicaSettings:
    return replica_settings(Data(t.inv.data))


def _primary_of(replica: Target) -> Target:
    primary = _primary()
    assert primary is not None, "replicas in the inventory, but no host in postgres_primary " \
        "(HA mode: no member leads)"
    return primary


def test_replica_in_recovery(replica: Target) -> None:
    """The replica is a hot standby: in recovery, read-only queries allowed"""
    assert replica.value("SELECT pg_is_in_recovery()") == "t", \
        f"{replica.name} is not in recovery: it runs as a primary (promoted?)"
    assert replica.setting("hot_standby") == "on", "hot_standby is off: no queries on the replica"
    assert replica.host.file(f"{replica.setting('data_directory')}/standby.signal").exists, \
        "standby.signal is missing: the next restart would end recovery"


def test_replica_streaming(replica: Target) -> None:
    """The replica streams from the primary through its own slot, over TLS (verify-full)"""
    primary = _primary_of(replica)
    slot = _slot(replica)
    rows = replica.sql("SELECT status, sender_host, slot_name FROM pg_stat_wal_receiver",
                       database="postgres")
    assert rows, f"{replica.name} has no WAL receiver (not connected to the primary):\n" + \
        replica.journal(replica.pg.unit)
    status, sender, used_slot = rows[0]
    assert (status, sender, used_slot) == ("streaming", primary.inv.address, slot), \
        f"WAL receiver: status {status}, from {sender}, slot {used_slot}; expected streaming " \
        f"from {primary.inv.address} through slot {slot}"
    assert "sslmode=verify-full" in replica.setting("primary_conninfo"), \
        "primary_conninfo does not verify the primary's certificate (sslmode=verify-full)"
    app_name = replica.name if ha.members() else slot  # Patroni's: the member name
    sender_rows = primary.sql(
        "SELECT r.state, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) "
        f"WHERE r.application_name = '{app_name}'", database="postgres")
    assert sender_rows == [["streaming", "t"]], \
        f"on {primary.name}, the walsender of {slot} (state, TLS) is {sender_rows}"


def test_replica_slot_on_primary(replica: Target) -> None:
    """The primary keeps a physical slot for the replica, in use"""
    primary = _primary_of(replica)
    slot = _slot(replica)
    rows = primary.sql("SELECT slot_type, active::text, coalesce(wal_status, '') FROM "
                       f"pg_replication_slots WHERE slot_name = '{slot}'", database="postgres")
    assert rows, f"no replication slot {slot} on {primary.name}: WAL the replica still needs " \
        "may be removed while it is down"
    assert rows[0][:2] == ["physical", "true"], f"slot {slot}: (type, active) = {rows[0][:2]}"
    assert rows[0][2] != "lost", f"slot {slot} was invalidated: rebuild the replica " \
        "(postgres_replica_reclone=True)"


def test_replica_lag_under_threshold(replica: Target) -> None:
    """Replication lag is under postgres_replica_max_lag_seconds / _max_lag_bytes"""
    rs = _settings(replica)
    seconds, lag_bytes = (float(v) for v in replica.sql(LAG, database="postgres")[0])
    assert seconds <= rs.max_lag_seconds, \
        f"{replica.name} replays {seconds:.1f} s behind (threshold {rs.max_lag_seconds} s)"
    assert lag_bytes <= rs.max_lag_bytes, \
        f"{replica.name} has {lag_bytes:.0f} bytes of WAL received but not replayed " \
        f"(threshold {rs.max_lag_bytes})"
