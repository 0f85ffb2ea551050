"""HA mode's settings and the files built for etcd, Patroni and keepalived (deploy/ha_config.py),
rendered without hosts."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from deploy import ha_config
from deploy.ha import dcs_differs
from deploy.ha_config import Member
from deploy.render import render
from deploy.settings import (
    AppSettings,
    Data,
    SettingsError,
    app_settings,
    check_ha_topology,
    ha_settings,
    postgres_settings,
    server_config,
)

HA = {"postgres_ha": True, "postgres_ha_vip": "10.0.0.100"}
MEMBERS = [Member("db1", "10.0.0.1"), Member("db2", "10.0.0.2"), Member("db3", "10.0.0.3")]


def _pg() -> tuple[object, AppSettings]:
    pg = replace(postgres_settings(Data({**HA, "postgres_allowed_cidrs": ["10.0.1.0/24"]})),
                 version=15)
    return pg, app_settings(Data({}))


def test_ha_needs_the_floating_address() -> None:
    with pytest.raises(SettingsError, match="postgres_ha_vip = None"):
        ha_settings(Data({"postgres_ha": True}))


def test_ttl_must_outlast_a_loop_and_two_retries() -> None:
    with pytest.raises(SettingsError, match=r"postgres_ha_ttl = 10.*>= .* \(25\)"):
        ha_settings(Data({**HA, "postgres_ha_ttl": 10, "postgres_ha_loop_wait": 5,
                          "postgres_ha_retry_timeout": 10}))


def _hosts(n: int, **data: object) -> list[tuple[str, list[str], object, str]]:
    groups = [["postgres_primary"]] + [["postgres_replicas"]] * (n - 1)
    return [(f"db{i + 1}", g, ha_settings(Data({**HA, **data})), f"10.0.0.{i + 1}")
            for i, g in enumerate(groups)]


def test_topology_accepts_three_members() -> None:
    check_ha_topology(_hosts(3))  # type: ignore[arg-type]
    check_ha_topology(_hosts(3), ["bk"])  # type: ignore[arg-type]


def test_ha_needs_a_backup_host() -> None:
    """The repository cannot live on a member: the settings check says so before any host."""
    with pytest.raises(SettingsError, match=r"settings error: backup = \[\]: HA mode needs a "
                       "host in group backup"):
        check_ha_topology(_hosts(3), [])  # type: ignore[arg-type]


@pytest.mark.parametrize(("hosts", "message"), [
    (_hosts(2), "needs 3 or more database hosts"),
    (_hosts(3, postgres_ha_vip="10.0.0.2"), "is db2's own address"),
    (_hosts(3, postgres_ha_readonly_vip="10.0.0.3"), "postgres_ha_readonly_vip .* db3's own"),
    (_hosts(2) + [("db3", ["postgres_replicas"], ha_settings(Data({})), "10.0.0.3")],
     "must be True on every database host"),
    (_hosts(2) + [("db3", ["postgres_replicas"],
                   ha_settings(Data({**HA, "postgres_ha_scope": "other"})), "10.0.0.3")],
     "postgres_ha_scope .* must be the same on every member"),
])
def test_topology_errors(hosts: list[tuple[str, list[str], object, str]], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        check_ha_topology(hosts)  # type: ignore[arg-type]


def test_single_host_layout_is_not_touched() -> None:
    check_ha_topology([("db1", ["postgres_primary"], ha_settings(Data({})), "10.0.0.1")])


def test_patroni_gets_the_deploys_own_server_settings() -> None:
    """Every computed setting goes to postgresql.parameters (Patroni's own ones aside), the
    members' settings Patroni takes only from etcd go to bootstrap.dcs, and pg_hba.conf's lines
    are the deploy's template plus the rewind role."""
    pg, app = _pg()
    ha = ha_settings(Data(HA))
    conf = server_config(pg, 4 * 1024 * 1024, 2)  # type: ignore[arg-type]
    hba = render("pg_hba.conf.j2", pg=pg, app=app, app_roles=[app.user],
                 replica_addresses=[m.address for m in MEMBERS])
    dcs = ha_config.dcs_config(ha, conf)
    params = ha_config.local_parameters(pg, conf)  # type: ignore[arg-type]
    config = ha_config.patroni_config(pg, ha, MEMBERS[0], MEMBERS, params,  # type: ignore[arg-type]
                                      ha_config.hba_lines(hba, MEMBERS), dcs,
                                      {"bgdb_replicator": "r", "bgdb_rewind": "w",
                                       "bgdb_patroni": "p"})
    parsed = json.loads(ha_config.dump(config).split("\n", 1)[1])  # YAML as JSON
    pp = parsed["postgresql"]["parameters"]
    for key in ("shared_buffers", "shared_preload_libraries", "password_encryption", "ssl",
                "log_connections", "pg_stat_statements.max", "work_mem"):
        assert pp[key] == conf[key]
    assert "port" not in pp and "listen_addresses" not in pp  # postgresql.listen says it
    assert parsed["postgresql"]["listen"] == "10.0.0.1,localhost:5432"
    assert parsed["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_connections"] == \
        conf["max_connections"]
    assert parsed["bootstrap"]["dcs"]["synchronous_mode"] is True
    assert parsed["bootstrap"]["dcs"]["postgresql"]["use_pg_rewind"] is True
    lines = parsed["postgresql"]["pg_hba"]
    assert lines[0] == "local all postgres peer"
    assert "hostssl replication bgdb_replicator 10.0.0.2/32 scram-sha-256" in lines
    assert "hostssl postgres bgdb_rewind 10.0.0.3/32 scram-sha-256" in lines
    # Patroni reads a standby's timeline over its local replication connection (the socket):
    # without this line a demoted old leader is never found diverged and never rewound.
    assert parsed["postgresql"]["use_unix_socket_repl"] is True
    assert lines[-1] == "local replication bgdb_replicator scram-sha-256"
    assert not any(" trust" in line or " md5" in line for line in lines)
    # the other members' etcd only, no discovery: a cut-off member's own etcd answers with the
    # stale view in which it still leads
    assert parsed["etcd3"]["hosts"] == ["10.0.0.2:2379", "10.0.0.3:2379"]
    assert parsed["etcd3"]["use_proxies"] is True
    assert parsed["etcd3"]["protocol"] == "https"
    # a member that starts to lead hands etcd's raft leadership away (its loss would renew the
    # leader key's lease to a full ttl)
    callbacks = parsed["postgresql"]["callbacks"]
    assert callbacks == {"on_start": ha_config.ETCD_LEADER_AWAY,
                         "on_role_change": ha_config.ETCD_LEADER_AWAY}
    script = ha_config.etcd_leader_away_script(ha, MEMBERS[0])
    assert "--endpoints=https://10.0.0.1:2379" in script and "move-leader" in script
    auth = parsed["postgresql"]["authentication"]
    assert auth["replication"]["sslmode"] == "verify-full"


def test_etcd_env_is_tls_on_both_ports() -> None:
    env = ha_config.etcd_env(ha_settings(Data(HA)), MEMBERS[1], MEMBERS)
    assert "ETCD_INITIAL_CLUSTER=db1=https://10.0.0.1:2380,db2=https://10.0.0.2:2380," \
        "db3=https://10.0.0.3:2380\n" in env
    assert "ETCD_CLIENT_CERT_AUTH=true\n" in env and "ETCD_PEER_CLIENT_CERT_AUTH=true\n" in env
    assert "ETCD_LISTEN_METRICS_URLS=http://10.0.0.2:2381\n" in env  # /metrics, /health only
    assert "http://" not in env.replace("ETCD_LISTEN_METRICS_URLS=http://", "")
    # a member back from a network cut must not unseat etcd's leader (Patroni's would demote)
    assert "ETCD_PRE_VOTE=true\n" in env


def test_keepalived_follows_patronis_primary_endpoint() -> None:
    conf = ha_config.keepalived_conf(ha_settings(Data(HA)), MEMBERS[0], MEMBERS)
    assert "http://10.0.0.1:8008/primary" in conf
    assert "10.0.0.100/24 dev eth0" in conf
    assert "    10.0.0.2\n    10.0.0.3\n" in conf and "unicast_src_ip 10.0.0.1" in conf
    assert "advert_int 0.2" in conf  # the address moves ~0.7 s after the new leader's check
    # the check resets the connections made to the address before keepalived lets it go
    assert f'script "{ha_config.VIP_CHECK} http://10.0.0.1:8008/primary 10.0.0.100"' in conf
    assert 'ss -K -tn src "$2"' in ha_config.vip_check_script()


def test_keepalived_read_only_address_prefers_a_replica() -> None:
    without = ha_config.keepalived_conf(ha_settings(Data(HA)), MEMBERS[1], MEMBERS)
    assert "read-only" not in without and without.count("vrrp_instance") == 1
    ha = ha_settings(Data({**HA, "postgres_ha_readonly_vip": "10.0.0.101"}))
    conf = ha_config.keepalived_conf(ha, MEMBERS[1], MEMBERS)
    assert conf.count("vrrp_instance") == 2 and "10.0.0.101/24 dev eth0" in conf
    ro = conf[conf.index("vrrp_instance bgdb_bgdb_ro"):]
    # a member that can serve reads holds it (FAULT otherwise), a replica 50 above the leader
    assert "http://10.0.0.2:8008/read-only" in conf and "http://10.0.0.2:8008/replica" in conf
    assert "bgdb_readable\n    bgdb_replica" in ro and "  weight 50\n" in conf
    assert f"virtual_router_id {ha_config.router_id('bgdb-ro')}" in ro
    assert "advert_int 0.5" in ro
    assert ha_config.router_id("bgdb-ro") != ha_config.router_id("bgdb")
    assert ha.floating == ["10.0.0.100", "10.0.0.101"]


def test_read_only_address_differs_from_the_agents_one() -> None:
    with pytest.raises(SettingsError, match="postgres_ha_readonly_vip = '10.0.0.100': must differ"):
        ha_settings(Data({**HA, "postgres_ha_readonly_vip": "10.0.0.100"}))


def test_dcs_patch_holds_only_what_differs() -> None:
    current = {"ttl": 20, "postgresql": {"parameters": {"max_connections": "100"},
                                         "use_slots": True}}
    wanted = {"ttl": 20, "postgresql": {"parameters": {"max_connections": "300"},
                                        "use_slots": True}}
    assert dcs_differs(current, wanted) == {"postgresql": {"parameters":
                                                           {"max_connections": "300"}}}
    assert dcs_differs(wanted, wanted) == {}
    assert dcs_differs(None, {"ttl": 20}) == {"ttl": 20}
