"""The HA readiness checks' judgements (checks/ha.py), each shown passing and failing on
Patroni's GET /cluster answers and etcdctl's lines as the lab gives them."""

from __future__ import annotations

from typing import Any

import pytest

from checks import ha


def member(name: str, role: str, state: str = "running", timeline: int = 2,
           lag: int | None = 0) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "role": role, "state": state, "timeline": timeline}
    if role != "leader":
        found["lag"] = lag
    return found


HEALTHY = {"members": [member("db1", "leader"), member("db2", "sync_standby", "streaming"),
                       member("db3", "replica", "streaming")]}


def test_a_healthy_cluster_passes_every_item() -> None:
    assert ha.leader_problem(HEALTHY, 3) is None
    assert ha.sync_problem(HEALTHY, True) is None
    assert ha.lag_problem(HEALTHY, 1 << 20) is None


@pytest.mark.parametrize(("view", "expected", "message"), [
    (None, 3, "no member's Patroni answers"),
    ({"members": [member("db1", "replica"), member("db2", "replica")]}, 2, "0 leaders"),
    ({"members": [member("db1", "leader"), member("db2", "leader")]}, 2, "2 leaders"),
    ({"members": [member("db1", "leader"), member("db2", "replica", "stopped")]}, 2,
     "members not running: db2 stopped"),
    ({"members": [member("db1", "leader"), member("db2", "replica")]}, 3,
     "2 members in Patroni's view, 3 in the inventory"),
])
def test_leader_item_fails(view: dict[str, Any] | None, expected: int, message: str) -> None:
    problem = ha.leader_problem(view, expected)
    assert problem is not None and message in problem


def test_timeline_item_fails_for_a_member_on_another_timeline() -> None:
    assert ha.timeline_problem(HEALTHY) is None
    view = {"members": [member("db1", "leader", timeline=4), member("db2", "replica", timeline=3)]}
    problem = ha.timeline_problem(view)
    assert problem is not None and "different timelines (db1 4, db2 3)" in problem


def test_settled_asks_again_until_the_problem_is_gone_or_time_is_up() -> None:
    answers = iter(["behind", "behind", None])
    assert ha.settled(lambda: next(answers), seconds=5, pause=0) is None
    asked: list[int] = []

    def stuck() -> str:
        asked.append(1)
        return "behind"

    assert ha.settled(stuck, seconds=0.05, pause=0.01) == "behind"
    assert len(asked) >= 2


def test_sync_item_fails_without_a_sync_standby_only_in_synchronous_mode() -> None:
    view = {"members": [member("db1", "leader"), member("db2", "replica")]}
    assert "no synchronous standby" in (ha.sync_problem(view, True) or "")
    assert ha.sync_problem(view, False) is None


def test_lag_item_fails_for_a_lagging_or_unknown_member() -> None:
    view = {"members": [member("db1", "leader"), member("db2", "replica", lag=5 << 20),
                        member("db3", "replica", lag=None)]}
    problem = ha.lag_problem(view, 1 << 20)
    assert problem is not None and "db2 5242880" in problem and "db3 None" in problem


OK = "https://10.0.0.{} :2379 is healthy: successfully committed proposal: took = 2.1ms"
SICK = ("https://10.0.0.{}:2379 is unhealthy: failed to commit proposal: context deadline "
        "exceeded")


def test_etcd_item() -> None:
    assert ha.etcd_problem([OK.format(1), OK.format(2), OK.format(3)], 3) is None
    one_down = ha.etcd_problem([OK.format(1), OK.format(2), SICK.format(3)], 3)
    assert one_down is not None and "unhealthy (2 of 3 healthy)" in one_down
    no_quorum = ha.etcd_problem([OK.format(1), SICK.format(2), SICK.format(3)], 3)
    assert no_quorum is not None and "no quorum: 1 of 3" in no_quorum
    assert "no quorum: 0 of 3" in (ha.etcd_problem(["Error: connection refused"], 3) or "")


def test_the_view_most_members_agree_on_wins() -> None:
    """An old leader busy stopping PostgreSQL answers from its stale view (itself leading)."""
    from bgdb import patroni

    stale = {"members": [member("db1", "leader"), member("db3", "replica")]}
    fresh = {"members": [member("db1", "replica", "stopped"), member("db3", "leader")]}
    assert patroni.agreed([stale, fresh, fresh]) is fresh
    assert patroni.agreed([None, stale]) is stale
    assert patroni.agreed([None, None]) is None


@pytest.mark.parametrize(("holders", "message"), [
    (["db3"], None),
    ([], "0 members hold the read-only address 10.0.0.101 (none): expected exactly one"),
    (["db2", "db3"], "2 members hold the read-only address"),
    (["db1"], "db1 holds the read-only address 10.0.0.101, not a running replica (db2, db3)"),
])
def test_readonly_address_on_one_replica(holders: list[str], message: str | None) -> None:
    problem = ha.readonly_problem(HEALTHY, "10.0.0.101", holders)
    assert problem == message if message is None else message in (problem or "")


def test_readonly_address_on_the_leader_when_no_replica_runs() -> None:
    alone = {"members": [member("db1", "leader"), member("db2", "replica", "stopped")]}
    assert ha.readonly_problem(alone, "10.0.0.101", ["db1"]) is None
