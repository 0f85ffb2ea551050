"""HA mode (postgres_ha) in the checks: who leads is Patroni's answer, not the inventory's
postgres_primary (bgdb/patroni.py asks it over SSH)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from bgdb import patroni
from bgdb.remote import Target
from deploy.ha_config import slot_name as slot_name


@cache
def members() -> tuple[Target, ...]:
    """The database hosts when HA mode is on, else ()."""
    return tuple(patroni.members())


@cache
def cluster() -> dict[str, Any] | None:
    """Patroni's view of the cluster from the first member that answers."""
    return patroni.first_view(members())


def holds(target: Target, address: str) -> bool:
    """Whether the member has the floating address on one of its interfaces now."""
    return f" {address}/" in target.host.run("ip -o -4 addr show").stdout


def leader() -> Target | None:
    name = patroni.leader_name(cluster())
    return next((t for t in members() if t.name == name), None)


# --- what the HA readiness checks judge (pure, so each failure is shown in the unit tests) ----

RUNNING = ("running", "streaming")


def leader_problem(view: dict[str, Any] | None, expected: int) -> str | None:
    """Exactly one running leader, and every member of the inventory running with it."""
    if view is None:
        return "no member's Patroni answers (GET /cluster)"
    found = view.get("members", [])
    leads = [m["name"] for m in found if m.get("role") == "leader"]
    if len(leads) != 1:
        return f"{len(leads)} leaders ({', '.join(leads) or 'none'}): expected exactly one"
    down = [f"{m['name']} {m.get('state')}" for m in found if m.get("state") not in RUNNING]
    if down:
        return f"members not running: {', '.join(down)}"
    if len(found) < expected:
        return f"{len(found)} members in Patroni's view, {expected} in the inventory"
    return None


def timeline_problem(view: dict[str, Any] | None) -> str | None:
    """Every member on one timeline (the leader's)."""
    found = (view or {}).get("members", [])
    if len({m.get("timeline") for m in found}) > 1:
        on = ", ".join(f"{m['name']} {m.get('timeline')}" for m in found)
        return f"members on different timelines ({on}): one has not followed the leader"
    return None


def settled(problem: Callable[[], str | None], seconds: float,
            pause: float = 1.0) -> str | None:
    """``problem()`` asked again until it is None or ``seconds`` have passed: its last answer.
    For what Patroni publishes once per HA loop (a member's timeline in etcd): right after a
    failover an entry can be a loop behind; what outlasts two loops is real."""
    deadline = time.monotonic() + seconds
    found = problem()
    while found is not None and time.monotonic() < deadline:
        time.sleep(pause)
        found = problem()
    return found


def sync_problem(view: dict[str, Any] | None, synchronous_mode: bool) -> str | None:
    if not synchronous_mode:
        return None
    syncs = [m["name"] for m in (view or {}).get("members", []) if m.get("role") == "sync_standby"]
    if not syncs:
        return "no synchronous standby: commits are acknowledged by the leader alone " \
            "(a failover now could lose them)"
    return None


def lag_problem(view: dict[str, Any] | None, max_bytes: int) -> str | None:
    behind = [f"{m['name']} {m.get('lag')}" for m in (view or {}).get("members", [])
              if m.get("role") != "leader"
              and not (isinstance(m.get("lag"), int) and m["lag"] <= max_bytes)]
    return f"members lagging (bytes, limit {max_bytes}): {', '.join(behind)}" if behind else None


def etcd_problem(lines: list[str], members: int) -> str | None:
    """From `etcdctl endpoint health` (one line per endpoint): all healthy, else a quorum left."""
    healthy = [line for line in lines if " is healthy" in line]
    sick = [line for line in lines if " is unhealthy" in line]
    if len(healthy) <= members // 2:
        return f"etcd has no quorum: {len(healthy)} of {members} members healthy: {sick}"
    if sick or len(healthy) < members:
        return f"etcd members unhealthy ({len(healthy)} of {members} healthy): {sick}"
    return None


def readonly_problem(view: dict[str, Any] | None, vip: str, holders: list[str]) -> str | None:
    """The read-only address on exactly one member: a running replica when there is one (the
    leader may hold it only when none runs)."""
    if len(holders) != 1:
        return (f"{len(holders)} members hold the read-only address {vip} "
                f"({', '.join(holders) or 'none'}): expected exactly one")
    replicas = [m["name"] for m in (view or {}).get("members", [])
                if m.get("role") != "leader" and m.get("state") in RUNNING]
    if replicas and holders[0] not in replicas:
        return (f"{holders[0]} holds the read-only address {vip}, not a running replica "
                f"({', '.join(replicas)})")
    return None
