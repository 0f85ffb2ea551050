"""Which database hosts an operator command talks to, and reaching them over SSH.

Every problem an operator can cause or meet here (an unknown host name, a host that does not
answer, a missing file) is an OperatorError: the CLI prints its one line and exits 2.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import paramiko

from bgdb.remote import Target
from deploy.hostdata import InventoryHost, load_inventory

DB_GROUPS = ("postgres_primary", "postgres_replicas")


class OperatorError(RuntimeError):
    """Bad input or an unreachable host: one line for the operator, no traceback."""


def role_of(host: InventoryHost) -> str:
    return "primary" if "postgres_primary" in host.groups else "replica"


def db_hosts(inventory: Sequence[InventoryHost] | None = None) -> list[InventoryHost]:
    """The database hosts, primary first."""
    hosts = list(load_inventory() if inventory is None else inventory)
    found = [h for h in hosts if set(DB_GROUPS) & set(h.groups)]
    return sorted(found, key=lambda h: (role_of(h) != "primary", h.name))


def select(names: Sequence[str], inventory: Sequence[InventoryHost] | None = None,
           *, default_primary: bool = False) -> list[InventoryHost]:
    """Hosts by inventory name or address; none given: every database host (or the primary)."""
    hosts = db_hosts(inventory)
    if not hosts:
        raise OperatorError("the inventory has no host in group postgres_primary or "
                            "postgres_replicas")
    if not names:
        if default_primary:
            primary = [h for h in hosts if role_of(h) == "primary"]
            if not primary:
                raise OperatorError("the inventory has no host in group postgres_primary")
            return primary[:1]
        return hosts
    chosen: list[InventoryHost] = []
    for name in names:
        match = [h for h in hosts if name in (h.name, h.address)]
        if not match:
            known = ", ".join(h.name for h in hosts)
            raise OperatorError(f"unknown host {name!r}: database hosts are {known}")
        chosen.extend(h for h in match if h not in chosen)
    return chosen


def reach(inv: InventoryHost) -> Target:
    """A Target whose SSH connection is open: an unreachable host fails here, in one line."""
    target = Target(inv)
    try:
        out = target.host.run("true")  # opens the SSH connection (cached on the target)
    except (OSError, paramiko.SSHException) as exc:
        detail = str(exc) or type(exc).__name__
        raise OperatorError(f"host {inv.name} ({inv.address}) is unreachable over SSH: "
                            f"{detail}") from None
    if out.rc != 0:
        raise OperatorError(f"host {inv.name} ({inv.address}): a trivial command failed over SSH "
                            f"(rc {out.rc}): {out.stderr.strip()}")
    return target


def tcp_open(address: str, port: int, timeout: float = 5.0) -> str | None:
    """None when something accepts TCP connections on address:port, else why not."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__
