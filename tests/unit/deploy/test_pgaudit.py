"""pgaudit settings: validation, what lands in the drop-in, the package per major version."""

from __future__ import annotations

import pytest

from deploy import postgres
from deploy.render import render
from deploy.settings import (
    Data,
    PostgresSettings,
    SettingsError,
    pgaudit_included,
    postgres_settings,
    server_config,
)

BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"], "postgres_version": 15}


def pg(**extra: object) -> PostgresSettings:
    return postgres_settings(Data({**BASE, **extra}, env={}))


def test_defaults_preload_pgaudit_for_ddl_and_role_without_parameters() -> None:
    conf = server_config(pg(), 2 << 20, 2)
    assert conf["shared_preload_libraries"] \
        == "pg_stat_statements,pgaudit,passwordcheck,auth_delay,set_user"
    assert (conf["pgaudit.log"], conf["pgaudit.log_relation"], conf["pgaudit.log_parameter"]) \
        == ("ddl, role", "off", "off")
    drop_in = render("bgdb.conf.j2", pg=pg(), conf=conf, tuned_for="t",
                     listen_addresses=["10.0.0.5"])
    assert "pgaudit.log = 'ddl, role'\n" in drop_in


def test_package_follows_the_major_version() -> None:
    assert "postgresql-15-pgaudit" in postgres.packages(pg())
    assert "postgresql-16-pgaudit" in postgres.packages(pg(postgres_version=16))
    assert not any("pgaudit" in p for p in postgres.packages(pg(postgres_pgaudit=False)))


def test_audit_off_leaves_no_pgaudit_line() -> None:
    conf = server_config(pg(postgres_pgaudit=False), 2 << 20, 2)
    assert conf["shared_preload_libraries"] \
        == "pg_stat_statements,passwordcheck,auth_delay,set_user"
    assert not [k for k in conf if k.startswith("pgaudit")]


@pytest.mark.parametrize(("value", "expected"), [
    ("ddl, role, write", ("ddl", "role", "write")),
    (["ALL", "-misc"], ("all", "-misc")),
    (["role", "ddl", "role"], ("role", "ddl")),
])
def test_accepted_classes(value: object, expected: tuple[str, ...]) -> None:
    assert pg(postgres_pgaudit_log=value).pgaudit_log == expected


@pytest.mark.parametrize(("key", "value", "says"), [
    ("postgres_pgaudit_log", ["ddl", "rolle"], "not a pgaudit.log class"),
    ("postgres_pgaudit_log", "none", "not a pgaudit.log class"),
    ("postgres_pgaudit_log", ["ddl"], "at least ddl and role"),
    ("postgres_pgaudit_log", ["all", "-role"], "at least ddl and role"),
    ("postgres_pgaudit_log", [], "expected a list"),
    ("postgres_pgaudit", "yes", "True or False"),
    ("postgres_pgaudit_log_parameter", 1, "True or False"),
])
def test_bad_values_are_refused(key: str, value: object, says: str) -> None:
    with pytest.raises(SettingsError, match=says) as err:
        pg(**{key: value})
    assert err.value.key == key


def test_overrides_cannot_drop_or_bypass_pgaudit() -> None:
    with pytest.raises(SettingsError, match="must keep pgaudit") as err:
        pg(postgres_overrides={"shared_preload_libraries": "pg_stat_statements"})
    assert err.value.key == "postgres_overrides.shared_preload_libraries"
    with pytest.raises(SettingsError, match="postgres_pgaudit"):
        pg(postgres_overrides={"pgaudit.log": "none"})
    # Extra libraries are the operator's business, as long as ours stay.
    libs = "pgaudit,pg_stat_statements,auto_explain"
    extra = pg(postgres_overrides={"shared_preload_libraries": libs})
    assert server_config(extra, 2 << 20, 2)["shared_preload_libraries"] == libs


def test_included_classes() -> None:
    assert pgaudit_included(["all", "-read", "-write"]) == \
        {"function", "role", "ddl", "misc", "misc_set"}
    assert pgaudit_included(["none"]) == {"none"}


def test_primary_and_replicas_must_agree() -> None:
    from deploy.hostdata import InventoryHost
    from deploy.validate import validate_hosts

    hosts = [InventoryHost("db1", "10.0.0.1", ("postgres_primary",), dict(BASE)),
             InventoryHost("rep1", "10.0.0.2", ("postgres_replicas",),
                           {**BASE, "postgres_pgaudit": False})]
    with pytest.raises(SettingsError, match="same on the primary and its replicas") as err:
        validate_hosts(hosts)
    assert err.value.key == "postgres_pgaudit"
    validate_hosts([hosts[0], InventoryHost("rep1", "10.0.0.2", ("postgres_replicas",), BASE)])
