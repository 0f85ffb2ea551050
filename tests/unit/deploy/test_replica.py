"""Read replicas without hosts: the clone guard, settings a standby needs, slot names, the
rendered files, and the inventory rules."""

from __future__ import annotations

import ipaddress

import pytest

from deploy import replica
from deploy.render import render
from deploy.settings import (
    AppSettings,
    Data,
    SettingsError,
    check_replication_topology,
    postgres_settings,
    replica_settings,
    replication_slot_name,
)

RS = replica_settings(Data({}))


@pytest.mark.parametrize(("data", "server", "reclone", "expected"), [
    ("empty", "down", False, "clone"),  # fresh host
    ("pending", "down", False, "clone"),  # created, or a copy that failed half-way
    ("standby", "t,streaming", False, "keep"),
    ("standby", "t,streaming", True, "keep"),  # never copy a healthy replica again
    ("standby", "down", False, "keep"),  # stopped: start it, do not copy
    ("standby", "t,none", False, "keep"),  # primary away for a moment
    ("standby", "t,none", True, "clone"),  # asked to rebuild a replica that does not stream
    ("other", "f,none", False, "refuse"),  # a former primary: its data is not thrown away
    ("other", "f,none", True, "clone"),
    ("other", "down", False, "refuse"),
])
def test_clone_decision(data: str, server: str, reclone: bool, expected: str) -> None:
    assert replica.clone_decision(data, server, reclone) == expected


def test_standby_state_fact_parses_output() -> None:
    fact = replica.StandbyState()
    assert fact.process(["standby", "t,streaming"]) == ("standby", "t,streaming")
    assert fact.process(["empty", "down"]) == ("empty", "down")
    assert fact.process([]) == ("empty", "down")


def test_standby_floor_raises_to_the_primary_only() -> None:
    own = {"max_connections": "300", "max_worker_processes": "4", "work_mem": "4MB"}
    primary = {"max_connections": "200", "max_worker_processes": "8",
               "max_locks_per_transaction": "128"}
    conf = replica.standby_floor(own, primary)
    assert conf == {"max_connections": "300", "max_worker_processes": "8", "work_mem": "4MB",
                    "max_locks_per_transaction": "128"}
    assert own["max_worker_processes"] == "4", "the input is not changed"


@pytest.mark.parametrize(("name", "slot"), [
    ("repl-rep1", "bgdb_repl_rep1"),
    ("DB.Replica-2", "bgdb_db_replica_2"),
    ("x" * 80, "bgdb_" + "x" * 58),
])
def test_slot_names(name: str, slot: str) -> None:
    assert replication_slot_name(name) == slot
    assert len(slot) <= 63


def test_orphan_slots_only_the_deploys_own() -> None:
    slots = ["bgdb_rep1", "bgdb_gone", "someone_elses", "bgdb_rep2"]
    assert replica.orphan_slots(slots, ["bgdb_rep1", "bgdb_rep2"]) == ["bgdb_gone"]


def test_primary_conninfo_verifies_the_primary() -> None:
    info = replica.primary_conninfo("10.0.0.5", 5433, "bgdb_rep1")
    params = dict(p.split("=", 1) for p in info.split())
    assert params == {
        "host": "10.0.0.5", "port": "5433", "user": "bgdb_replicator",
        "passfile": replica.PASSFILE, "sslmode": "verify-full", "sslrootcert": "/etc/bgdb/ca.crt",
        "channel_binding": "require", "application_name": "bgdb_rep1", "connect_timeout": "10"}
    assert "password" not in info


def test_replica_conf_renders_the_primary_and_slot() -> None:
    conf = replica.replica_conf(replica.Member("db1", "10.0.0.5", 5432), "rep-2", RS)
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert lines == [
        f"primary_conninfo = '{replica.primary_conninfo('10.0.0.5', 5432, 'bgdb_rep_2')}'",
        "primary_slot_name = 'bgdb_rep_2'",
        "hot_standby = on",
        "hot_standby_feedback = on",
        "recovery_target_timeline = 'latest'",
    ]
    off = replica_settings(Data({"postgres_replica_hot_standby_feedback": False}))
    assert "hot_standby_feedback = off" in replica.replica_conf(
        replica.Member("db1", "10.0.0.5", 5432), "rep-2", off)


def test_passfile_escapes_and_matches_replication_only() -> None:
    assert replica.passfile_line("a:b\\c") == "*:*:replication:bgdb_replicator:a\\:b\\\\c\n"


def test_topology_peers() -> None:
    topo = replica.Topology(replica.Member("db1", "10.0.0.1", 5432),
                            (replica.Member("r1", "10.0.0.2", 5432),
                             replica.Member("r2", "10.0.0.3", 5432)))
    assert topo.peers_of("r1") == ["10.0.0.1", "10.0.0.3"]
    assert topo.peers_of("db1") == ["10.0.0.2", "10.0.0.3"]


def test_pg_hba_lets_exactly_the_peers_replicate() -> None:
    pg = postgres_settings(Data({"postgres_allowed_cidrs": ["10.1.0.0/24"]}))
    app = AppSettings("background_agents", "bg_agents_user", 5432, "verify-full", 10, 30, None)
    hba = render("pg_hba.conf.j2", pg=pg, app=app, app_roles=["bg_agents_user"],
                 replica_addresses=["10.0.0.2", "10.0.0.3"])
    lines = [line.split() for line in hba.splitlines() if " replication " in f" {line} "]
    assert lines == [["hostssl", "replication", "bgdb_replicator", "10.0.0.2/32", "scram-sha-256"],
                     ["hostssl", "replication", "bgdb_replicator", "10.0.0.3/32", "scram-sha-256"]]


def test_firewall_template_lets_peers_in() -> None:
    pg = postgres_settings(Data({"postgres_allowed_cidrs": ["10.1.0.0/24"]}))
    peers = [str(ipaddress.ip_network("10.0.0.2")), "10.1.0.0/24"]
    rules = render("firewall.nft.j2", pg=pg, client_cidrs=peers, monitoring_cidrs=[],
                   db_ports=[5432, 6432], monitoring_ports=[], ha_ports=[], ha_cidrs=[])
    assert "elements = { 10.0.0.2/32, 10.1.0.0/24 }" in rules


@pytest.mark.parametrize(("hosts", "message"), [
    ([("db1", ["postgres_primary"]), ("db2", ["postgres_primary"])], "exactly one primary"),
    ([("r1", ["postgres_replicas"])], "need a host in postgres_primary"),
    ([("db1", ["postgres_primary", "postgres_replicas"])], "not both"),
    ([("db1", ["postgres_primary"]), ("rep-1", ["postgres_replicas"]),
      ("rep.1", ["postgres_replicas"])], "same as rep-1's"),
])
def test_topology_errors(hosts: list[tuple[str, list[str]]], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        check_replication_topology(hosts)


def test_topology_ok() -> None:
    check_replication_topology([("db1", ["postgres_primary"]), ("r1", ["postgres_replicas"]),
                                ("r2", ["postgres_replicas"]), ("n", [])])
    check_replication_topology([("db1", ["postgres_primary"])])


def test_replica_settings_defaults_and_validation() -> None:
    assert (RS.drop_orphan_slots, RS.reclone, RS.hot_standby_feedback) == (False, False, True)
    assert (RS.max_lag_seconds, RS.max_lag_bytes) == (30, 64 << 20)
    with pytest.raises(SettingsError, match="postgres_drop_orphan_slots"):
        replica_settings(Data({"postgres_drop_orphan_slots": "yes"}))
    with pytest.raises(SettingsError, match="postgres_replica_max_lag_seconds"):
        replica_settings(Data({"postgres_replica_max_lag_seconds": 0}))


def test_group_data_is_valid() -> None:
    from deploy.hostdata import load_group_data

    data = {**load_group_data("all"), **load_group_data("postgres_primary"),
            **load_group_data("postgres_replicas")}
    rs = replica_settings(Data(data))
    assert rs == RS
