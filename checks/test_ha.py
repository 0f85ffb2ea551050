"""HA mode (postgres_ha): the Patroni cluster, its etcd and the agents' address. Nothing to
check (all skipped) when HA mode is off."""

from __future__ import annotations

import shlex

import pytest

from bgdb import patroni
from bgdb.remote import Target
from checks import ha
from checks.timers import MAINTENANCE_TIMERS, failed_jobs, timer_problems
from deploy import ha_config
from deploy.settings import Data, backup_settings, replica_settings


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "member" in metafunc.fixturenames:
        found = list(ha.members())
        metafunc.parametrize("member", found, ids=[t.name for t in found], scope="session")
    if "cluster_via" in metafunc.fixturenames:  # cluster-wide items: asked once
        found = list(ha.members())[:1]
        metafunc.parametrize("cluster_via", found, ids=["cluster"] * len(found), scope="session")


def test_ha_one_leader_all_members_running(cluster_via: Target) -> None:
    """Patroni: exactly one leader, every member running on its timeline"""
    problem = ha.leader_problem(ha.cluster(), len(ha.members()))
    assert problem is None, problem
    # Each member publishes its timeline once per HA loop: two loops to follow a new leader.
    loop = patroni.settings(cluster_via.inv).loop_wait
    problem = ha.settled(lambda: ha.timeline_problem(ha.cluster()), seconds=2 * loop + 2)
    assert problem is None, problem


def test_ha_sync_standby_present(cluster_via: Target) -> None:
    """Synchronous mode has its standby: an acknowledged commit survives a failover"""
    settings = patroni.settings(cluster_via.inv)
    problem = ha.sync_problem(ha.cluster(), settings.synchronous_mode)
    assert problem is None, problem


def test_ha_members_not_lagging(cluster_via: Target) -> None:
    """No standby is behind the leader by more than postgres_replica_max_lag_bytes"""
    limit = replica_settings(Data(cluster_via.inv.data)).max_lag_bytes
    problem = ha.lag_problem(ha.cluster(), limit)
    assert problem is None, problem


def test_ha_etcd_healthy_with_quorum(member: Target) -> None:
    """etcd: every member answers over TLS (client certificates), so it keeps its quorum"""
    settings = patroni.settings(member.inv)
    endpoints = ",".join(f"https://{t.inv.address}:{settings.etcd_client_port}"
                         for t in ha.members())
    # A healthy member commits in milliseconds; etcdctl waits the whole timeout on one that is
    # down, and Patroni itself gives etcd ~1.2 s a request: 2 s, not etcdctl's 5.
    out = member.host.run(
        f"ETCDCTL_API=3 etcdctl --endpoints={shlex.quote(endpoints)} --cacert {ha_config.CA} "
        f"--cert {ha_config.PATRONI_DIR}/etcd-client.crt "
        f"--key {ha_config.PATRONI_DIR}/etcd-client.key --dial-timeout=1s --command-timeout=2s "
        "endpoint health")
    problem = ha.etcd_problem((out.stdout + out.stderr).splitlines(), len(ha.members()))
    assert problem is None, f"{problem}\n{member.journal('etcd')}"


def test_ha_address_on_the_leader_only(member: Target) -> None:
    """The agents' address (postgres_ha_vip) is on the leader and on no other member"""
    vip = patroni.settings(member.inv).vip
    leader = ha.leader()
    holds = vip is not None and ha.holds(member, vip)
    leads = leader is not None and leader.name == member.name
    assert holds == leads, (f"{member.name} {'holds' if holds else 'lacks'} {vip} but "
                            f"{'leads' if leads else 'does not lead'}\n"
                            f"{member.journal('keepalived')}")


def test_ha_readonly_address_on_a_replica(cluster_via: Target) -> None:
    """The read-only address (postgres_ha_readonly_vip) is on one member, a replica"""
    vip = patroni.settings(cluster_via.inv).readonly_vip
    if vip is None:
        pytest.skip("no postgres_ha_readonly_vip set")
    holders = [t.name for t in ha.members() if ha.holds(t, vip)]
    problem = ha.readonly_problem(ha.cluster(), vip, holders)
    assert problem is None, problem


def test_ha_maintenance_scheduled(member: Target) -> None:
    """Maintenance timers on every member (whoever leads runs them: partitions ahead, retention)
    and none failed on its last run"""
    wrong = timer_problems(member, MAINTENANCE_TIMERS)
    wrong += failed_jobs(member, backup_settings(Data(member.inv.data)).status_dir,
                         MAINTENANCE_TIMERS)
    assert not wrong, "; ".join(wrong) + " (systemctl list-timers 'bgdb-*'; journalctl -u " \
        "bgdb-<job>)"
