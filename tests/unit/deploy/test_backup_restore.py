"""The operator's restore command: its plan and the pgBackRest command line (no hosts)."""

from __future__ import annotations

import pytest

from bgdb.restore import Plan, RestoreError, make_plan, parse_time
from deploy.hostdata import InventoryHost

DATA = {"postgres_allowed_cidrs": ["10.0.0.0/24"], "ssh_user": "root"}
HOSTS = [
    InventoryHost("db1", "10.0.0.11", ("postgres_primary",), dict(DATA)),
    InventoryHost("spare", "10.0.0.12", (), dict(DATA)),
    InventoryHost("db2", "10.0.0.13", ("postgres_primary",), dict(DATA)),
]


def test_parse_time() -> None:
    assert parse_time("2026-01-31 12:00:00+01") == "2026-01-31 11:00:00+00:00"
    assert parse_time("2026-01-31T12:00:00.250Z") == "2026-01-31 12:00:00.250000+00:00"
    with pytest.raises(RestoreError, match="time zone"):
        parse_time("2026-01-31 12:00:00")
    with pytest.raises(RestoreError, match="expected"):
        parse_time("yesterday")


def test_in_place_point_in_time() -> None:
    plan = make_plan(HOSTS, None, None, "2026-01-31 12:00:00+00", delta=False)
    assert plan.in_place and plan.source.name == "db1"
    assert plan.pgbackrest_restore() == [
        "pgbackrest", "--config=/etc/pgbackrest/pgbackrest.conf", "--stanza=bgdb",
        "--type=time", "--target=2026-01-31 12:00:00+00:00", "--target-action=promote",
        "restore"]


def test_latest_onto_another_host_uses_a_copy_and_does_not_archive() -> None:
    plan: Plan = make_plan(HOSTS, "db1", "10.0.0.12", None, delta=True)
    assert not plan.in_place and plan.target.name == "spare"
    assert plan.repo_path == "/var/lib/pgbackrest-restore/db1"
    assert plan.pgbackrest_restore() == [
        "pgbackrest", "--config=/etc/pgbackrest/restore-from-db1.conf", "--stanza=bgdb",
        "--delta", "--archive-mode=off", "restore"]


def test_refuses_another_primary_and_unknown_hosts() -> None:
    with pytest.raises(RestoreError, match="deployed primary"):
        make_plan(HOSTS, "db1", "db2", None, delta=False)
    with pytest.raises(RestoreError, match="no host 'nope'"):
        make_plan(HOSTS, None, "nope", None, delta=False)


def test_with_a_backup_host_the_repository_is_copied_from_it() -> None:
    data = {**DATA, "backup_repo_host": "10.0.0.19"}
    hosts = [InventoryHost("db1", "10.0.0.11", ("postgres_primary",), dict(data)),
             InventoryHost("spare", "10.0.0.12", (), dict(data)),
             InventoryHost("bk", "10.0.0.19", ("backup",), dict(data))]
    assert make_plan(hosts, None, "spare", None, delta=False).repo_holder.name == "bk"
    assert make_plan(hosts, None, None, None, delta=False).in_place
    with pytest.raises(RestoreError, match="bk is the backup host"):
        make_plan(hosts, None, "bk", None, delta=False)
    assert make_plan(HOSTS, "db1", "spare", None, delta=False).repo_holder.name == "db1"


def test_ha_mode_restores_the_leaders_repository_onto_a_spare_only() -> None:
    data = {**DATA, "backup_repo_host": "10.0.0.19", "postgres_ha": True,
            "postgres_ha_vip": "10.0.0.100"}
    hosts = [InventoryHost("db1", "10.0.0.11", ("postgres_primary",), dict(data)),
             InventoryHost("db2", "10.0.0.13", ("postgres_replicas",), dict(data)),
             InventoryHost("db3", "10.0.0.14", ("postgres_replicas",), dict(data)),
             InventoryHost("spare", "10.0.0.12", (), dict(data)),
             InventoryHost("bk", "10.0.0.19", ("backup",), dict(data))]
    plan = make_plan(hosts, None, "spare", None, delta=False, leader="db3")
    assert (plan.source.name, plan.target.name, plan.repo_holder.name) == ("db3", "spare", "bk")
    assert plan.pg.unit.startswith("postgresql@")  # the copy is no Patroni member
    for target in (None, "db1", "db2"):  # in place, or onto another member
        with pytest.raises(RestoreError, match="HA mode: db.* is a Patroni member; restore "
                           "onto a spare host"):
            make_plan(hosts, None, target, None, delta=False, leader="db1" if target else "db3")
    with pytest.raises(RestoreError, match="HA mode: no member leads now"):
        make_plan(hosts, None, "spare", None, delta=False, leader=None)
