"""deploy/aptbatch.py on plain data: the first batched install of a host asks apt for its own
packages and every other batched one of the host, each once, its own first."""

from __future__ import annotations

from deploy.aptbatch import merged


def test_own_packages_first_then_the_rest_once() -> None:
    planned = ["postgresql-15", "nftables", "pgbouncer", "pgbackrest"]
    assert merged(["pgbouncer", "sudo"], planned) == [
        "pgbouncer", "sudo", "postgresql-15", "nftables", "pgbackrest"]


def test_planning_keeps_declaration_order_without_repeats() -> None:
    planned = merged(merged([], ["postgresql-15", "nftables"]), ["nftables", "pgbadger"])
    assert planned == ["postgresql-15", "nftables", "pgbadger"]
