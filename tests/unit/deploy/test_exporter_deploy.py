"""The exporter's deploy without hosts: its settings, config.json, passfile and unit file."""

from __future__ import annotations

import json
from typing import Any

import bcrypt
import pytest

from deploy import exporter
from deploy.render import render
from deploy.settings import (
    AppSettings,
    Data,
    ExporterSettings,
    PostgresSettings,
    SettingsError,
    app_settings,
    exporter_settings,
    postgres_settings,
)
from exporters.config import build_config

BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"]}


def pg_app(**data: Any) -> tuple[PostgresSettings, AppSettings, Data]:
    d = Data({**BASE, **data}, env={})
    return postgres_settings(d), app_settings(d), d


def settings(**data: Any) -> ExporterSettings:
    pg, _, d = pg_app(**data)
    return exporter_settings(d, pg)


def test_defaults() -> None:
    ex = settings()
    assert (ex.enabled, ex.port, ex.listen_address, ex.heartbeat_interval_seconds) == \
        (True, 9847, None, 60)
    assert ex.pgbouncer, "deploy/pgbouncer.py exists: PgBouncer is scraped by default"
    assert ex.backup_status and not ex.tls and ex.basic_auth_user is None
    assert not settings(exporter_pgbouncer=False).pgbouncer


@pytest.mark.parametrize(("data", "key"), [
    ({"exporter_port": 9187}, "exporter_port"),  # postgres_exporter's
    ({"exporter_port": 5432}, "exporter_port"),
    ({"exporter_port": 6432}, "exporter_port"),
    ({"exporter_port": 22}, "exporter_port"),
    ({"exporter_port": 70000}, "exporter_port"),
    ({"exporter_listen_address": "0.0.0.0"}, "exporter_listen_address"),
    ({"exporter_listen_address": "db1"}, "exporter_listen_address"),
    ({"exporter_basic_auth_user": "a b"}, "exporter_basic_auth_user"),
    ({"exporter_statement_timeout_seconds": 10, "exporter_scrape_timeout_seconds": 5},
     "exporter_scrape_timeout_seconds"),
    ({"exporter_heartbeat_interval_seconds": 0}, "exporter_heartbeat_interval_seconds"),
    ({"exporter_agent_heartbeat_cache_seconds": 30}, "exporter_agent_heartbeat_cache_seconds"),
    ({"exporter_agent_heartbeat_cache_seconds": 5, "exporter_heartbeat_interval_seconds": 10},
     "exporter_agent_heartbeat_cache_seconds"),
    ({"exporter_agent_heartbeat_cache_seconds": -1}, "exporter_agent_heartbeat_cache_seconds"),
    ({"exporter_tls": "yes"}, "exporter_tls"),
    ({"exporter_log_level": "TRACE"}, "exporter_log_level"),
])
def test_bad_values_are_refused_naming_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingsError) as err:
        settings(**data)
    assert err.value.key == key


def test_config_is_valid_for_the_exporter(tmp_path: Any) -> None:
    pg, app, _ = pg_app()
    ex = settings(exporter_basic_auth_user="prometheus")
    cfg = exporter.exporter_config(ex, pg, app, service_address="10.0.0.5", bouncer_port=6432,
                                   backup_status_file="/var/lib/bgdb/status/backup.json",
                                   basic_auth_password="s3cret")
    assert cfg["listen_address"] == "10.0.0.5" and cfg["port"] == 9847
    assert cfg["dsn"] == ("host=/var/run/postgresql port=5432 dbname=background_agents "
                          "user=bg_agents_monitor passfile=/etc/bgdb-exporter/pgpass")
    assert "port=6432 dbname=pgbouncer user=bg_agents_monitor" in cfg["pgbouncer_dsn"]
    stored = cfg["basic_auth_password_bcrypt"]
    assert bcrypt.checkpw(b"s3cret", stored.encode())
    # The host's hash is kept while it matches (no rewrite, no restart); else a new one.
    again = exporter.exporter_config(ex, pg, app, service_address="10.0.0.5", bouncer_port=6432,
                                     backup_status_file=None, basic_auth_password="s3cret",
                                     current_hash=stored)
    assert again["basic_auth_password_bcrypt"] == stored
    assert exporter.current_password_hash(exporter.render_config(cfg).splitlines()) == stored
    other = exporter.password_hash("changed", stored)
    assert other != stored and bcrypt.checkpw(b"changed", other.encode())
    text = exporter.render_config(cfg)
    assert "s3cret" not in text, "the configuration must not hold a password"
    # The exporter's own validation accepts it (sql_dir is checked on this machine's copy).
    parsed = json.loads(text)
    parsed["sql_dir"] = str(exporter.jobs.REPO / "sql" / "exporter")
    built = build_config(parsed)
    assert built.port == 9847 and built.basic_auth_username == "prometheus"


def test_config_without_pgbouncer_or_backups() -> None:
    pg, app, _ = pg_app()
    cfg = exporter.exporter_config(settings(), pg, app, service_address="10.0.0.5",
                                   bouncer_port=None, backup_status_file=None)
    assert cfg["pgbouncer_dsn"] is None and cfg["backup_status_file"] is None
    assert "basic_auth_username" not in cfg and "tls_cert_file" not in cfg


def test_passfile_escapes_and_lists_each_login() -> None:
    text = exporter.passfile([(5432, "background_agents"), (6432, "pgbouncer")], "a:b\\c")
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == ["*:5432:background_agents:bg_agents_monitor:a\\:b\\\\c",
                     "*:6432:pgbouncer:bg_agents_monitor:a\\:b\\\\c"]


def test_unit_is_hardened_and_runs_the_package() -> None:
    unit = render("bgdb-exporter.service.j2", user=exporter.USER, remote=exporter.REMOTE,
                  config=exporter.CONFIG, after=["postgresql@15-main.service"])
    for line in ("User=bgdb-exporter", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=",
                 "ExecStart=/usr/bin/python3 -m exporters --config /etc/bgdb-exporter/config.json",
                 "WorkingDirectory=/usr/local/lib/bgdb"):
        assert line in unit.splitlines(), line


def test_heartbeat_cache_reaches_the_exporter_only_when_set() -> None:
    pg, app, _ = pg_app()
    default = exporter.exporter_config(settings(), pg, app, service_address="10.0.0.5",
                                       bouncer_port=None, backup_status_file=None)
    # Unset: the key stays out of config.json (the exporter's 0.4 x interval applies, and a host
    # deployed before the setting existed gets the same file: no rewrite, no restart).
    assert "agent_heartbeat_cache_seconds" not in default
    assert build_config({**default, "sql_dir": str(exporter.jobs.REPO / "sql" / "exporter")}) \
        .heartbeat_cache_seconds == 24.0
    set_ = exporter.exporter_config(settings(exporter_agent_heartbeat_cache_seconds=0), pg, app,
                                    service_address="10.0.0.5", bouncer_port=None,
                                    backup_status_file=None)
    assert set_["agent_heartbeat_cache_seconds"] == 0
    built = build_config({**set_, "sql_dir": str(exporter.jobs.REPO / "sql" / "exporter")})
    assert built.heartbeat_cache_seconds == 0
