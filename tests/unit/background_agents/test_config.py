"""AdapterConfig from the seed's POSTGRESQL_* variables: defaults, validation, conninfo."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from background_agents.config import AdapterConfig, ConfigError


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def test_defaults_match_the_seed(ca: Path) -> None:
    cfg = AdapterConfig.from_env({"POSTGRESQL_SSL_ROOT_CERT": str(ca)})
    assert (cfg.host, cfg.port, cfg.database, cfg.user) == (
        "localhost", 5432, "background_agents", "bg_agents_user")
    assert (cfg.ssl_mode, cfg.pool_size, cfg.timeout) == ("verify-full", 10, 30.0)
    assert cfg.ssl_root_cert == str(ca)
    assert cfg.password is None


def test_every_variable_is_read(ca: Path) -> None:
    cfg = AdapterConfig.from_env({
        "POSTGRESQL_HOST": "10.231.0.11", "POSTGRESQL_PORT": "6432",
        "POSTGRESQL_DATABASE": "agents", "POSTGRESQL_USER": "worker",
        "POSTGRESQL_PASSWORD": "s3cret", "POSTGRESQL_SSL_MODE": "verify-ca",
        "POSTGRESQL_SSL_ROOT_CERT": str(ca), "POSTGRESQL_POOL_SIZE": "4",
        "POSTGRESQL_TIMEOUT": "7",
    })
    params = conninfo_to_dict(cfg.conninfo())
    assert params == {
        "host": "10.231.0.11", "port": "6432", "dbname": "agents", "user": "worker",
        "password": "s3cret", "sslmode": "verify-ca", "sslrootcert": str(ca),
        "connect_timeout": "7", "application_name": "background-agents",
        # a vanished server fails a statement in seconds (HA failover, network cut)
        "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "3",
        "keepalives_count": "3", "tcp_user_timeout": "10000",
    }
    assert (cfg.pool_size, cfg.timeout) == (4, 7.0)


def test_password_never_shown(ca: Path) -> None:
    cfg = AdapterConfig.from_env({"POSTGRESQL_PASSWORD": "s3cret",
                                  "POSTGRESQL_SSL_ROOT_CERT": str(ca)})
    assert "s3cret" not in repr(cfg)
    assert "s3cret" not in cfg.describe()


def test_root_cert_defaults_to_libpq_location(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".postgresql").mkdir()
    (tmp_path / ".postgresql" / "root.crt").write_text("x")
    cfg = AdapterConfig.from_env({})
    assert cfg.ssl_root_cert == str(tmp_path / ".postgresql" / "root.crt")


def test_verify_mode_without_ca_names_the_variable(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="POSTGRESQL_SSL_ROOT_CERT") as err:
        AdapterConfig.from_env({"POSTGRESQL_SSL_MODE": "verify-full"})
    assert err.value.variable == "POSTGRESQL_SSL_ROOT_CERT"


def test_non_verifying_mode_needs_no_ca() -> None:
    cfg = AdapterConfig.from_env({"POSTGRESQL_SSL_MODE": "require"})
    assert "sslrootcert" not in conninfo_to_dict(cfg.conninfo())


@pytest.mark.parametrize(("variable", "value", "allowed"), [
    ("POSTGRESQL_PORT", "99999", "integer 1-65535"),
    ("POSTGRESQL_PORT", "abc", "integer 1-65535"),
    ("POSTGRESQL_POOL_SIZE", "0", "integer 1-10000"),
    ("POSTGRESQL_TIMEOUT", "1.5", "integer 1-3600"),
    ("POSTGRESQL_SSL_MODE", "on", "verify-full"),
])
def test_bad_values_are_named(variable: str, value: str, allowed: str) -> None:
    env = {"POSTGRESQL_SSL_MODE": "disable", variable: value}
    with pytest.raises(ConfigError) as err:
        AdapterConfig.from_env(env)
    assert err.value.variable == variable
    assert repr(value) in str(err.value) and allowed in str(err.value)


def test_overrides_win_over_environment() -> None:
    cfg = AdapterConfig.from_env({"POSTGRESQL_SSL_MODE": "disable", "POSTGRESQL_POOL_SIZE": "9"},
                                 pool_size=1, application_name="agent-7")
    assert cfg.pool_size == 1 and cfg.pool_min_size == 1
    assert conninfo_to_dict(cfg.conninfo())["application_name"] == "agent-7"


def test_inconsistent_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="pool_min_size"):
        AdapterConfig(ssl_mode="disable", pool_size=2, pool_min_size=3)
    with pytest.raises(ConfigError, match="max_attempts"):
        AdapterConfig(ssl_mode="disable", max_attempts=0)
