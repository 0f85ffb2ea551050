"""HA mode (postgres_ha) from the operator's machine: the cluster as Patroni sees it, and a
planned switchover. Patroni's REST API is asked over SSH on the members (on their service
address), so nothing but SSH needs to reach them; unsafe requests carry the REST login the
deploy left on each member (/etc/patroni/rest.curlrc, root only)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Sequence
from typing import Any

from bgdb.remote import Target
from bgdb.targets import OperatorError
from deploy.hostdata import InventoryHost, load_inventory
from deploy.settings import Data, HaSettings, ha_settings

DB_GROUPS = {"postgres_primary", "postgres_replicas"}
CURLRC = "/etc/patroni/rest.curlrc"  # deploy/ha.py REST_CURLRC


def settings(inv: InventoryHost) -> HaSettings:
    return ha_settings(Data(inv.data))


def members(inventory: Sequence[InventoryHost] | None = None) -> list[Target]:
    """The database hosts when HA mode is on, else []."""
    hosts = load_inventory() if inventory is None else inventory
    found = [h for h in hosts if DB_GROUPS & set(h.groups)]
    return [Target(h) for h in found] if found and settings(found[0]).enabled else []


def _url(t: Target, path: str) -> str:
    return f"http://{t.inv.address}:{settings(t.inv).rest_port}{path}"


def cluster_view(via: Target) -> dict[str, Any] | None:
    """Patroni's GET /cluster as `via` sees it, None when its Patroni does not answer."""
    try:
        out = via.host.run(f"curl -s --max-time 5 {shlex.quote(_url(via, '/cluster'))}")
    except Exception:  # noqa: BLE001 - an unreachable member: ask the next one
        return None
    try:
        view = json.loads(out.stdout) if out.rc == 0 else None
    except ValueError:
        return None
    return view if isinstance(view, dict) else None


def first_view(targets: Sequence[Target]) -> dict[str, Any] | None:
    """The view most members agree on about who leads: a member whose Patroni is busy (an old
    leader stopping PostgreSQL after losing etcd) answers from its last, stale, view."""
    return agreed([cluster_view(t) for t in targets])


def agreed(views: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    found = [v for v in views if v is not None]
    if not found:
        return None
    votes: dict[str | None, int] = {}
    for v in found:
        votes[leader_name(v)] = votes.get(leader_name(v), 0) + 1
    best = max(votes, key=lambda name: (votes[name], name is not None))
    return next(v for v in found if leader_name(v) == best)


def leader_name(view: dict[str, Any] | None) -> str | None:
    return next((m["name"] for m in (view or {}).get("members", [])
                 if m.get("role") == "leader" and m.get("state") == "running"), None)


def leader_host(inventory: Sequence[InventoryHost] | None = None) -> InventoryHost | None:
    """HA mode: the member that leads now (Patroni's answer, not postgres_primary); None
    outside HA mode."""
    targets = members(inventory)
    if not targets:
        return None
    view = first_view(targets)
    name = leader_name(view)
    if name is None:
        raise OperatorError("HA mode: no member leads now ("
                            + ("no member's Patroni answers" if view is None else
                               ", ".join(f"{m.get('name')} {m.get('role')} {m.get('state')}"
                                         for m in view.get("members", []))) + ")")
    return next(t.inv for t in targets if t.name == name)


def switchover(to: str | None = None, timeout: float = 60.0,
               say: Any = print) -> tuple[str, str, float]:
    """Hand the leadership over (to `to`, else Patroni's choice among the healthy standbys);
    returns (old leader, new leader, seconds until the new one ran as leader)."""
    targets = members()
    if not targets:
        raise OperatorError("not in HA mode (postgres_ha): use bgdb promote")
    view = first_view(targets)
    old = leader_name(view)
    if old is None:
        raise OperatorError(f"no member leads now: {view}")
    by_name = {t.name: t for t in targets}
    if to is not None:
        named = [t.name for t in targets if to in (t.name, t.inv.address)]
        if not named:
            raise OperatorError(f"{to} is not a member: {', '.join(by_name)}")
        to = named[0]
        if to == old:
            raise OperatorError(f"{to} leads already")
    leader = by_name[old]
    body = json.dumps({"leader": old, **({"candidate": to} if to else {})})
    say(f"switching over from {old}" + (f" to {to}" if to else ""))
    started = time.monotonic()
    out = leader.host.run(f"curl -s --max-time {int(timeout)} -K {CURLRC} -X POST "
                          f"-d {shlex.quote(body)} -w '\\n%{{http_code}}' "
                          f"{shlex.quote(_url(leader, '/switchover'))}")
    lines = out.stdout.strip().splitlines()
    if out.rc != 0 or not lines or lines[-1] != "200":
        raise OperatorError(f"Patroni refused the switchover: {' '.join(lines)} {out.stderr}")
    while time.monotonic() - started < timeout:
        new = leader_name(first_view(targets))
        if new not in (None, old):
            seconds = time.monotonic() - started
            say(f"{new} leads ({seconds:.1f}s); {old} follows it as a replica")
            return old, new, seconds
        time.sleep(0.2)
    raise OperatorError(f"no new leader within {timeout:.0f}s")
