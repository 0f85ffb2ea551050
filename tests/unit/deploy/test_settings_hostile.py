"""The issue's hostile and careless inputs, through the real inventory (hosts file, group data,
BGDB_EXTRA_DATA): each is refused before any host, in one line naming key, value and source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deploy import hostdata
from deploy.hostdata import load_inventory
from deploy.settings import postgres_settings
from deploy.settings_schema import Data, SettingsError
from deploy.validate import validate_hosts

BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"]}


def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_data: dict[str, Any],
              extra: dict[str, Any] | None = None) -> Path:
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps({"hosts": [{"name": "db1", "address": "10.0.0.5",
                                            "groups": ["postgres_primary"],
                                            "data": {**BASE, **host_data}}]}))
    monkeypatch.setenv("BGDB_HOSTS_FILE", str(hosts))
    if extra is None:
        monkeypatch.delenv("BGDB_EXTRA_DATA", raising=False)
    else:
        monkeypatch.setenv("BGDB_EXTRA_DATA", json.dumps(extra))
    return hosts


def refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_data: dict[str, Any],
            extra: dict[str, Any] | None = None) -> str:
    inventory(tmp_path, monkeypatch, host_data, extra)
    with pytest.raises(SettingsError) as err:
        validate_hosts(load_inventory())
    message = str(err.value)
    assert "\n" not in message and message.startswith("settings error: "), message
    return message


@pytest.mark.parametrize(("extra", "expected"), [
    ({"postgres_alowed_cidrs": ["10.0.0.0/24"]},
     "settings error: postgres_alowed_cidrs = ['10.0.0.0/24'] (from BGDB_EXTRA_DATA): unknown "
     "key: did you mean postgres_allowed_cidrs"),
    ({"pgbouncer_pool_sise": 20},
     "settings error: pgbouncer_pool_sise = 20 (from BGDB_EXTRA_DATA): unknown key: did you "
     "mean pgbouncer_pool_mode or pgbouncer_reserve_pool_size or pgbouncer_default_pool_size?"),
    ({"postgres_allowed_cidrs": ["0.0.0.0/0"]},
     "settings error: postgres_allowed_cidrs = '0.0.0.0/0' (from BGDB_EXTRA_DATA): wider than "
     "/8: opens the database to 4,294,967,296 addresses; narrow it, or set "
     "postgres_allow_public_access = True"),
    ({"postgres_admin_cidrs": ["::/0"]},
     "settings error: postgres_admin_cidrs = '::/0' (from BGDB_EXTRA_DATA): wider than /32"),
    ({"postgres_monitoring_cidrs": ["10.0.0.0/7"]},
     "settings error: postgres_monitoring_cidrs = '10.0.0.0/7' (from BGDB_EXTRA_DATA): wider "
     "than /8"),
    ({"postgres_overrides": {"ssl": "off"}},
     "settings error: postgres_overrides.ssl = 'off' (from BGDB_EXTRA_DATA): TLS is always on"),
    ({"postgres_overrides": {"listen_addresses": "*"}},
     "settings error: postgres_overrides.listen_addresses = '*' (from BGDB_EXTRA_DATA): set by "
     "postgres_listen_addresses (never '*')"),
    ({"postgres_overrides": {"log_connections": "on\npgaudit.log = none"}},
     "settings error: postgres_overrides.log_connections = 'on\\npgaudit.log = none' (from "
     "BGDB_EXTRA_DATA): control characters and backslashes are refused"),
    ({"postgres_overrides": {"work_mem": "16MB\\"}},
     "settings error: postgres_overrides.work_mem = '16MB\\\\' (from BGDB_EXTRA_DATA): control "
     "characters and backslashes are refused"),
    ({"postgres_overrides": {"password_encryption": "md5"}},
     "settings error: postgres_overrides.password_encryption = 'md5' (from BGDB_EXTRA_DATA): "
     "always scram-sha-256"),
    ({"postgres_overrides": {"hba_file": "/tmp/open.conf"}},
     "settings error: postgres_overrides.hba_file = '/tmp/open.conf' (from BGDB_EXTRA_DATA): the "
     "bundle renders pg_hba.conf"),
    ({"postgres_overrides": {"archive_command": "/bin/true"}},
     "settings error: postgres_overrides.archive_command = '/bin/true' (from BGDB_EXTRA_DATA): "
     "WAL archiving is set by the backup_* keys"),
    ({"postgres_overrides": {"log_destination": "syslog"}},
     "settings error: postgres_overrides.log_destination = 'syslog' (from BGDB_EXTRA_DATA): the "
     "audit lines must reach the PostgreSQL log"),
    ({"postgres_overrides": {"ssl_min_protocol_version": "TLSv1"}},
     "settings error: postgres_overrides.ssl_min_protocol_version = 'TLSv1' (from "
     "BGDB_EXTRA_DATA): the bundle needs one of TLSv1.2, TLSv1.3"),
    ({"postgres_overrides": {"shared_bufers": "1GB"}},
     "settings error: postgres_overrides = 'shared_bufers' (from BGDB_EXTRA_DATA): not a setting "
     "of PostgreSQL 13; did you mean shared_buffers?"),
    ({"postgres_overrides": {"work_mem": "16 parsecs"}},
     "settings error: postgres_overrides.work_mem = '16 parsecs' (from BGDB_EXTRA_DATA): "
     "expected an integer 64-2147483647 (unit kB, or with a unit) (PostgreSQL 13)"),
])
def test_hostile_input_is_refused_naming_its_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any],
        expected: str) -> None:
    assert refused(tmp_path, monkeypatch, {}, extra).startswith(expected)


def test_a_typo_in_the_hosts_file_names_the_file_and_host(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(tmp_path, monkeypatch, {"pgbouncer_pool_sise": 20})
    assert message.startswith(f"settings error: pgbouncer_pool_sise = 20 (from {tmp_path}/"
                              "hosts.json host db1): unknown key: did you mean ")


def test_a_typo_in_group_data_names_the_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    groups = tmp_path / "group_data"
    groups.mkdir()
    (groups / "all.py").write_text("postgres_alowed_cidrs = ['10.0.0.0/24']\n")
    monkeypatch.setattr(hostdata, "GROUP_DATA", groups)
    message = refused(tmp_path, monkeypatch, {})
    assert message == ("settings error: postgres_alowed_cidrs = ['10.0.0.0/24'] (from "
                       "group_data/all.py): unknown key: did you mean postgres_allowed_cidrs or "
                       "postgres_admin_cidrs? every key is in docs/settings.md")


def test_a_bad_value_in_the_hosts_file_names_the_file_and_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(tmp_path, monkeypatch, {"postgres_allowed_cidrs": ["0.0.0.0/0"]})
    assert f"(from {tmp_path}/hosts.json host db1): wider than /8" in message


def test_keys_of_pyinfra_and_the_inventory_are_known(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    inventory(tmp_path, monkeypatch, {"ssh_user": "admin", "_sudo": True, "ssh_port": 2222,
                                      "ssh_connect_retries": 2, "_sudo_user": "root"})
    hosts = load_inventory()
    validate_hosts(hosts)
    assert hosts[0].data["service_address"] == "10.0.0.5"


def test_public_access_needs_the_loud_key(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    inventory(tmp_path, monkeypatch, {}, {"postgres_allowed_cidrs": ["0.0.0.0/0", "::/0"],
                                          "postgres_allow_public_access": True})
    (host,) = load_inventory()
    validate_hosts([host])
    pg = postgres_settings(host.settings_data())
    assert [str(n) for n in pg.allowed_cidrs] == ["0.0.0.0/0", "::/0"]
    # The bound is the operator's: a /16 network needs /16 or wider allowed.
    data = {**BASE, "postgres_allowed_cidrs": ["10.0.0.0/7"], "postgres_cidr_min_prefix_v4": 7}
    assert postgres_settings(Data(data, env={})).allowed_cidrs[0].prefixlen == 7


def test_bgdb_extra_data_must_be_an_object(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    inventory(tmp_path, monkeypatch, {})
    monkeypatch.setenv("BGDB_EXTRA_DATA", "[1, 2]")
    with pytest.raises(SettingsError, match="BGDB_EXTRA_DATA = '\\[1, 2\\]': expected a JSON"):
        load_inventory()
