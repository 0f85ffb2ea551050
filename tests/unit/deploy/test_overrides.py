"""postgres_overrides against pg_settings of the target major (tables built from Debian's
PostgreSQL 13, 15 and 17 by deploy/pg_settings/generate.sh)."""

from __future__ import annotations

import json

import pytest

from deploy import overrides
from deploy.settings import postgres_settings
from deploy.settings_schema import Data, SettingsError

BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"]}


def check(guc: dict[str, str], version: int | None = None) -> None:
    postgres_settings(Data({**BASE, "postgres_overrides": guc, "postgres_version": version},
                           env={}))


@pytest.mark.parametrize("guc", [
    {"work_mem": "16MB"}, {"work_mem": "65536"}, {"statement_timeout": "1.5s"},
    {"statement_timeout": "5min"}, {"random_page_cost": "1.1"}, {"jit": "off"}, {"jit": "t"},
    {"log_statement": "DDL"}, {"search_path": "'$user', public"},
    {"synchronous_standby_names": "ANY 1 (bgdb_node2)"}, {"pg_stat_statements.max": "10000"},
    {"auto_explain.log_min_duration": "1s"},  # another extension's namespace: not checked
    {"wal_level": "logical"}, {"ssl_min_protocol_version": "TLSv1.3"},
    {"shared_preload_libraries": "pg_stat_statements,pgaudit,auto_explain"},
])
def test_good_overrides_pass_on_every_shipped_major(guc: dict[str, str]) -> None:
    check(guc)
    for major in overrides.SHIPPED_MAJORS:
        check(guc, major)


@pytest.mark.parametrize(("guc", "says"), [
    ({"max_connections": "0"}, "max_connections = '0': expected an integer 1-262143"),
    ({"work_mem": "10s"}, "work_mem = '10s': expected an integer 64-2147483647 (unit kB"),
    ({"work_mem": "10"}, "work_mem = '10': expected an integer 64-"),
    ({"random_page_cost": "-1"}, "random_page_cost = '-1': expected a number 0-"),
    ({"log_statement": "everything"},
     "log_statement = 'everything': expected one of none, ddl, mod, all"),
    ({"jit": "maybe"}, "jit = 'maybe': expected on or off"),
    ({"pg_stat_statements.max": "50"}, "pg_stat_statements.max = '50': expected an integer 100-"),
    ({"pg_stat_statements.trak": "all"},
     "postgres_overrides = 'pg_stat_statements.trak': not a setting of PostgreSQL 17; did you "
     "mean pg_stat_statements.track?"),
])
def test_bad_overrides_are_refused_with_what_postgresql_takes(guc: dict[str, str],
                                                               says: str) -> None:
    with pytest.raises(SettingsError, match="^settings error: postgres_overrides[.= ]") as err:
        check(guc, 17)
    assert says in str(err.value)


def test_a_setting_of_one_major_only() -> None:
    check({"transaction_timeout": "1h"}, 17)  # new in 17
    check({"old_snapshot_threshold": "-1"}, 15)  # gone in 17
    with pytest.raises(SettingsError, match="not a setting of PostgreSQL 15"):
        check({"transaction_timeout": "1h"}, 15)
    with pytest.raises(SettingsError, match="not a setting of PostgreSQL 17"):
        check({"old_snapshot_threshold": "-1"}, 17)
    # Unset version: the host may get any shipped major, so it must suit all of them.
    with pytest.raises(SettingsError, match="not a setting of PostgreSQL 13"):
        check({"transaction_timeout": "1h"})


def test_a_major_without_a_table_gets_the_other_guards_only() -> None:
    assert overrides.table(16) is None
    check({"transaction_timeout": "1h", "made_up_setting": "x"}, 16)
    with pytest.raises(SettingsError, match="TLS is always on"):
        check({"ssl": "off"}, 16)
    with pytest.raises(SettingsError, match="control characters"):
        check({"work_mem": "1MB\n"}, 16)


def test_every_shipped_table_is_the_one_its_major_made() -> None:
    for major in overrides.SHIPPED_MAJORS:
        table = overrides.table(major)
        assert table is not None and len(table) > 300
        assert table["server_version_num"][0] == "integer"
        assert table["work_mem"][1] == "kB"
        doc = json.loads((overrides.TABLES / f"{major}.json").read_text())
        assert doc["server_version"].startswith(f"{major}.")
