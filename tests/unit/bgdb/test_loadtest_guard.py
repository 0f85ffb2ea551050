from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from psycopg.conninfo import conninfo_to_dict

from bgdb import loadtest_guard as guard
from deploy.hostdata import InventoryHost

HOSTS = [
    InventoryHost("db1", "10.0.1.10", ("postgres_primary", "monitoring"), {}),
    InventoryHost("db2", "10.0.1.11", ("postgres_replicas",), {}),
    InventoryHost("mon", "10.0.1.20", ("monitoring",), {}),
]
KNOWN = "database hosts are db1 (10.0.1.10), db2 (10.0.1.11)"
T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


# --- target selection ---

def test_an_inventory_address_is_pinned_to_itself() -> None:
    dsn = guard.check_target("host=10.0.1.10 port=6432 dbname=background_agents", HOSTS)
    assert conninfo_to_dict(dsn) == {"host": "10.0.1.10", "hostaddr": "10.0.1.10",
                                     "port": "6432", "dbname": "background_agents"}


def test_an_inventory_name_connects_to_the_inventorys_address() -> None:
    # No DNS answer (or $PGHOSTADDR) decides where the load goes: hostaddr does.
    params = conninfo_to_dict(guard.check_target("host=db1 dbname=x sslmode=verify-full", HOSTS))
    assert (params["host"], params["hostaddr"], params["sslmode"]) == ("db1", "10.0.1.10",
                                                                       "verify-full")


@pytest.mark.parametrize(("dsn", "bad"), [
    ("host=10.0.1.99 dbname=x", "10.0.1.99"), ("host=127.0.0.1 dbname=x", "127.0.0.1"),
    ("host=localhost dbname=x", "localhost"),
    ("host=/var/run/postgresql dbname=x", "/var/run/postgresql"),
    ("host=10.0.1.20 dbname=x", "10.0.1.20"),  # in the inventory, but not a database host
    ("host=db1 hostaddr=10.0.1.99 dbname=x", "10.0.1.99"),
    ("postgresql://10.231.0.11:6432/x", "10.231.0.11"),  # the lab's network is nothing special
])
def test_anything_the_inventory_does_not_name_as_a_database_host_is_refused(dsn: str,
                                                                            bad: str) -> None:
    with pytest.raises(guard.Refused) as refused:
        guard.check_target(dsn, HOSTS)
    assert str(refused.value) == (f"load test target {bad!r} is not a database host of the "
                                  f"inventory: {KNOWN}")


def test_ha_modes_agent_address_is_a_target() -> None:
    # The agents' one address (on whichever member leads), never a replica's read-only one.
    ha = {"postgres_ha": True, "postgres_ha_vip": "10.0.1.49",
          "postgres_ha_readonly_vip": "10.0.1.48"}
    members = [InventoryHost(h.name, h.address, h.groups, ha) for h in HOSTS]
    params = conninfo_to_dict(guard.check_target("host=10.0.1.49 dbname=x", members))
    assert (params["host"], params["hostaddr"]) == ("10.0.1.49", "10.0.1.49")
    with pytest.raises(guard.Refused, match="'10.0.1.48' is not a database host"):
        guard.check_target("host=10.0.1.48 dbname=x", members)
    with pytest.raises(guard.Refused, match="'10.0.1.49' is not a database host"):
        guard.check_target("host=10.0.1.49 dbname=x", HOSTS)  # not in HA mode


def test_a_dsn_without_host_or_with_a_service_or_two_hosts_is_refused() -> None:
    with pytest.raises(guard.Refused, match="names no host: it must be a database host"):
        guard.check_target("dbname=x", HOSTS)
    with pytest.raises(guard.Refused, match="not a service file entry"):
        guard.check_target("service=prod dbname=x", HOSTS)
    with pytest.raises(guard.Refused, match="names 2 hosts \\(db1, db2\\): name one"):
        guard.check_target("host=db1,db2 dbname=x", HOSTS)
    with pytest.raises(guard.Refused, match="not a libpq DSN"):
        guard.check_target("host=db1 dbname", HOSTS)


def test_an_inventory_without_database_hosts_refuses_everything() -> None:
    with pytest.raises(guard.Refused, match="database hosts are none"):
        guard.check_target("host=10.0.1.20", HOSTS[2:])


# --- the confirmation rule ---

def test_an_empty_primary_needs_no_confirmation() -> None:
    assert guard.data_refusal("10.0.1.10:6432/db", 0, None, confirmed=False) is None


def test_a_primary_with_other_agents_needs_the_flag() -> None:
    refusal = guard.data_refusal("10.0.1.10:6432/db", 3, "agent-7", confirmed=False)
    assert refusal == ("10.0.1.10:6432/db already holds data: 3 agent(s) that are not the load "
                       "test's (e.g. 'agent-7'). The load test writes next to them at full speed "
                       "(and removes only its own rows afterwards); pass "
                       "--confirm-existing-data to load it anyway")
    assert guard.data_refusal("10.0.1.10:6432/db", 3, "agent-7", confirmed=True) is None


# --- runs ---

def test_agent_ids_name_their_run() -> None:
    assert guard.agent_id("1a2b3c4d", 42) == "bgdb-loadtest-1a2b3c4d-00042"
    assert guard.run_of("bgdb-loadtest-1a2b3c4d-00042") == "1a2b3c4d"
    assert guard.run_of("bench-00042") == guard.LEGACY_RUN  # the earlier benchmark's
    for other in ("bench-42", "bench-000420", "agent-00042", "bgdb-loadtest-", "my-bench-00001"):
        assert guard.run_of(other) is None, other
    assert len({guard.new_run_id() for _ in range(50)}) == 50


def test_rows_group_into_runs_with_their_first_agent_and_deadline() -> None:
    later = (T0 + timedelta(minutes=5)).isoformat()
    rows = [("bgdb-loadtest-aa-00001", T0 + timedelta(seconds=3), later),
            ("bgdb-loadtest-aa-00000", T0, later),
            ("bgdb-loadtest-bb-00000", T0, (T0 + timedelta(minutes=1)).isoformat()),
            ("bench-00000", T0 - timedelta(days=3), None),
            ("agent-00001", T0, None)]
    runs = {r.run: r for r in guard.runs_from_rows(rows)}
    assert set(runs) == {"aa", "bb", guard.LEGACY_RUN}
    assert runs["aa"].agents == ("bgdb-loadtest-aa-00000", "bgdb-loadtest-aa-00001")
    assert runs["aa"].since == T0
    now = T0 + timedelta(minutes=2)
    # Before its deadline a run may still be going; after it (or without one) it is a leftover.
    assert [runs[r].live(now) for r in ("aa", "bb", guard.LEGACY_RUN)] == [True, False, False]


def test_removed_says_what_went() -> None:
    removed = guard.Removed("aa", {"help_requests": 740, "agents": 50, "system_events": 0}, 0.42)
    assert removed.line() == ("load test run aa: removed 790 rows (740 help_requests, 50 agents) "
                              "in 0.4 s")


def test_the_rest_of_the_dsn_is_kept_as_given() -> None:
    dsn = guard.check_target("host=db1 port=6432 user=u password='p w\\'\\\\x' sslmode=require",
                             HOSTS)
    assert conninfo_to_dict(dsn)["password"] == "p w'\\x"
