"""Settings: JSON file + flags -> validated ExporterConfig."""

from __future__ import annotations

import json
from pathlib import Path

import bcrypt
import pytest

from exporters.config import (
    DEFAULT_PORT,
    ConfigError,
    ExporterConfig,
    build_config,
    load_config,
)


def test_defaults() -> None:
    cfg = load_config([])
    assert cfg == ExporterConfig()
    assert cfg.port == DEFAULT_PORT == 9847
    assert cfg.heartbeat_interval_seconds == 60
    assert cfg.max_agents == 200
    assert cfg.statement_timeout_seconds == 2
    assert cfg.statement_timeout_ms == 2000
    assert "user=bg_agents_monitor" in cfg.dsn
    assert cfg.pgbouncer_dsn is None and cfg.backup_status_file is None


def test_file_then_flags_override(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "port": 9999,
        "dsn": "host=/run/postgresql dbname=agents user=bg_agents_monitor",
        "pgbouncer_dsn": "host=/run/postgresql port=6432 dbname=pgbouncer user=monitor",
        "max_agents": 50,
        "statement_timeout_seconds": 1.5,
    }))
    cfg = load_config(["--config", str(path), "--port", "9100", "--heartbeat-interval-seconds",
                       "30"])
    assert cfg.port == 9100  # flag wins
    assert cfg.max_agents == 50  # from the file
    assert cfg.heartbeat_interval_seconds == 30.0
    assert cfg.statement_timeout_ms == 1500
    assert cfg.pgbouncer_dsn is not None and "6432" in cfg.pgbouncer_dsn


def test_heartbeat_cache_defaults_below_half_the_interval() -> None:
    assert build_config({}).heartbeat_cache_seconds == 24  # 0.4 x 60
    assert build_config({"heartbeat_interval_seconds": 10}).heartbeat_cache_seconds == 4
    assert load_config(["--agent-heartbeat-cache-seconds", "0"]).heartbeat_cache_seconds == 0
    assert build_config({"agent_heartbeat_cache_seconds": None}).heartbeat_cache_seconds == 24


def test_sql_params_are_what_the_sql_files_use() -> None:
    params = build_config({"max_agents": 7}).sql_params()
    assert params["max_agents"] == 7
    assert set(params) == {"heartbeat_interval_seconds", "max_agents", "long_query_seconds",
                           "top_tables", "max_label_values"}


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"port": 0}, "port"),
        ({"port": "http"}, "port"),
        ({"port": 9847.5}, "port"),
        ({"max_agents": 0}, "max_agents"),
        ({"heartbeat_interval_seconds": 0}, "heartbeat_interval_seconds"),
        ({"agent_heartbeat_cache_seconds": -1}, "agent_heartbeat_cache_seconds"),
        ({"agent_heartbeat_cache_seconds": 30}, "agent_heartbeat_cache_seconds"),  # 60 / 2
        ({"agent_heartbeat_cache_seconds": "soon"}, "agent_heartbeat_cache_seconds"),
        ({"statement_timeout_seconds": -1}, "statement_timeout_seconds"),
        ({"statement_timeout_seconds": 5, "scrape_timeout_seconds": 2}, "scrape_timeout_seconds"),
        ({"dsn": " "}, "dsn"),
        ({"dsn": None}, "dsn"),
        ({"basic_auth_username": "prom"}, "basic_auth_username"),
        ({"basic_auth_username": "prom", "basic_auth_password_bcrypt": "secret"},
         "basic_auth_password_bcrypt"),
        ({"tls_cert_file": "/nonexistent/cert.pem", "tls_key_file": "/nonexistent/key.pem"},
         "tls_cert_file"),
        ({"tls_key_file": "/etc/hostname"}, "tls_cert_file"),
        ({"sql_dir": "/nonexistent"}, "sql_dir"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"no_such_setting": 1}, "no_such_setting"),
        ({"patroni_url": "10.0.0.1:8008/patroni"}, "patroni_url"),
    ],
)
def test_bad_settings_name_the_key(values: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build_config(values)


def test_basic_auth_and_tls_accepted_when_complete(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    digest = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    cfg = build_config({"basic_auth_username": "prom", "basic_auth_password_bcrypt": digest,
                        "tls_cert_file": str(cert), "tls_key_file": str(key)})
    assert cfg.basic_auth_password_bcrypt == digest


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(["--config", str(tmp_path / "missing.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("{port: 1}")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(["--config", str(bad)])
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(["--config", str(bad)])
