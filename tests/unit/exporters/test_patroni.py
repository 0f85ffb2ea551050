"""The Patroni source's metrics from GET /patroni answers (plain data: Patroni 3.0.2's JSON as a
lab member served it); the HA test's readiness checks read them from the real Patroni."""

from __future__ import annotations

from exporters.patroni import families

LEADER = {"state": "running", "role": "master", "server_version": 150020, "timeline": 1,
          "xlog": {"location": 83886080}, "dcs_last_seen": 1796612342,
          "replication": [{"application_name": "ha-db2", "sync_state": "sync"}],
          "patroni": {"version": "3.0.2", "scope": "bgdb"}}
SYNC_STANDBY = {"state": "running", "role": "replica", "server_version": 150020,
                "sync_standby": True, "timeline": 1, "dcs_last_seen": 1796612342,
                "patroni": {"version": "3.0.2", "scope": "bgdb"}}


def values(state: dict[str, object] | None, now: float = 1796612345.0
           ) -> dict[str, tuple[tuple[tuple[str, str], ...], float]]:
    return {f.name: (f.samples[0][1], f.samples[0][2]) for f in families(state, now)}


def test_leader() -> None:
    found = values(LEADER)
    assert found["bgdb_patroni_up"][1] == 1.0
    assert found["bgdb_patroni_leader"][1] == 1.0
    assert found["bgdb_patroni_running"][1] == 1.0
    assert found["bgdb_patroni_sync_standby"][1] == 0.0
    assert found["bgdb_patroni_pending_restart"][1] == 0.0
    assert found["bgdb_patroni_timeline"][1] == 1.0
    assert found["bgdb_patroni_dcs_last_seen_age_seconds"][1] == 3.0
    assert found["bgdb_patroni_info"] == (
        (("role", "master"), ("state", "running"), ("version", "3.0.2")), 1.0)


def test_sync_standby_with_a_pending_restart_on_patroni_4() -> None:
    found = values({**SYNC_STANDBY, "pending_restart": True, "patroni": {"version": "4.0.7"}})
    assert found["bgdb_patroni_leader"][1] == 0.0
    assert found["bgdb_patroni_sync_standby"][1] == 1.0
    assert found["bgdb_patroni_pending_restart"][1] == 1.0
    assert found["bgdb_patroni_info"][0][2] == ("version", "4.0.7")
    assert values({**LEADER, "role": "primary"})["bgdb_patroni_leader"][1] == 1.0  # 4.x's word


def test_no_answer_is_up_0_and_nothing_else() -> None:
    assert values(None) == {"bgdb_patroni_up": ((), 0.0)}


def test_a_stopped_replica_without_timeline_or_dcs() -> None:
    found = values({"state": "stopped", "role": "replica", "dcs_last_seen": 0})
    assert found["bgdb_patroni_running"][1] == 0.0
    assert "bgdb_patroni_timeline" not in found
    assert "bgdb_patroni_dcs_last_seen_age_seconds" not in found
