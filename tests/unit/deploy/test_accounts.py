"""deploy/accounts.py on plain data: the account fact's parser and when server.user would change
nothing (so the operation is skipped without pyinfra's all-accounts fact)."""

from __future__ import annotations

from deploy.accounts import Account, AccountFact, satisfied

ENTRY = "bgdb-exporter:x:998:997:bgdb Prometheus exporter:/nonexistent:/usr/sbin/nologin"


def wanted(have: Account | None, shell: str = "/usr/sbin/nologin",
           comment: str = "bgdb Prometheus exporter",
           groups: tuple[str, ...] = ("bgdb-pgsocket",)) -> bool:
    return satisfied(have, home="/nonexistent", shell=shell, comment=comment, groups=list(groups))


def test_parses_entry_and_secondary_groups() -> None:
    found = AccountFact().process([ENTRY, "bgdb-exporter", "bgdb-exporter bgdb-pgsocket"])
    assert found == Account("/nonexistent", "/usr/sbin/nologin", "bgdb Prometheus exporter",
                            "bgdb-exporter", ("bgdb-pgsocket",))


def test_missing_account_is_none() -> None:
    assert AccountFact().process([]) is None


def test_satisfied_only_when_every_asked_attribute_matches() -> None:
    have = AccountFact().process([ENTRY, "bgdb-exporter", "bgdb-exporter bgdb-pgsocket adm"])
    assert wanted(have)  # extra groups stay: append=True
    assert not wanted(None)
    assert not wanted(have, shell="/bin/sh")
    assert not wanted(have, comment="other")
    assert not wanted(have, groups=("bgdb-pgsocket", "postgres"))
