"""The hardening settings (CIS PostgreSQL) in the rendered server configuration."""

from __future__ import annotations

from deploy.settings import Data, PostgresSettings, postgres_settings, server_config

BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"], "postgres_version": 15}


def pg(**extra: object) -> PostgresSettings:
    return postgres_settings(Data({**BASE, **extra}, env={}))


def test_defaults_close_the_cis_controls() -> None:
    conf = server_config(pg(), 2 << 20, 2)
    assert {k: conf[k] for k in ("logging_collector", "log_file_mode", "log_error_verbosity",
                                 "log_replication_commands", "ssl_min_protocol_version",
                                 "unix_socket_permissions", "auth_delay.milliseconds")} == {
        "logging_collector": "on", "log_file_mode": "0600", "log_error_verbosity": "verbose",
        "log_replication_commands": "on", "ssl_min_protocol_version": "TLSv1.3",
        "unix_socket_permissions": "0770", "auth_delay.milliseconds": "500"}
    assert {"passwordcheck", "auth_delay"} <= set(conf["shared_preload_libraries"].split(","))
    # Only forward-secret key exchange for TLS 1.2, should an override allow it.
    assert all(s.startswith(("ECDHE+", "DHE+", "!")) for s in conf["ssl_ciphers"].split(":"))


def test_auth_delay_zero_and_password_check_off_load_nothing() -> None:
    conf = server_config(pg(postgres_auth_delay_ms=0, postgres_password_check=False), 2 << 20, 2)
    libs = conf["shared_preload_libraries"].split(",")
    assert "auth_delay" not in libs and "passwordcheck" not in libs
    assert "auth_delay.milliseconds" not in conf


def test_set_user_where_debian_packages_it() -> None:
    """CIS 4.8: set_user preloaded and installed for PostgreSQL 15 and 17 (Debian 12, 13); 13
    (Debian 11) has no package, so nothing names it there; off loads nothing."""
    from deploy.postgres import packages

    for version, wanted in ((15, True), (17, True), (13, False)):
        settings = pg(postgres_version=version)
        libs = server_config(settings, 2 << 20, 2)["shared_preload_libraries"].split(",")
        assert ("set_user" in libs, f"postgresql-{version}-set-user" in packages(settings)) \
            == (wanted, wanted), version
    off = pg(postgres_set_user=False)
    assert not off.set_user_installed
    assert "set_user" not in server_config(off, 2 << 20, 2)["shared_preload_libraries"]
