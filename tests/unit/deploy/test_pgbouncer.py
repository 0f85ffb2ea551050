"""PgBouncer settings, sizing guard and rendered files, without hosts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from deploy import pgbouncer, postgres, roles, scram
from deploy.render import render
from deploy.settings import (
    Data,
    PgBouncerSettings,
    SettingsError,
    app_role_connection_limit,
    app_settings,
    pgbouncer_settings,
    planned_max_connections,
    postgres_settings,
)

BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"], "postgres_version": 15}


def settings(env: dict[str, str] | None = None, **data: Any) -> PgBouncerSettings:
    d = Data({**BASE, **data}, env=env or {})
    return pgbouncer_settings(d, app_settings(d), postgres_settings(d))


def test_defaults_follow_the_seed_variables() -> None:
    b = settings()
    assert (b.port, b.pool_mode, b.default_pool_size, b.max_client_conn, b.query_wait_timeout) \
        == (6432, "transaction", 300 // 2 // 2 - 5, 1000 * 10 + 100, 30)
    assert b.max_db_connections == 150  # half of max_connections for all pools together
    assert b.admin_users == () and b.stats_users == ("bg_agents_monitor",)
    assert b.databases == ("background_agents",)
    b = settings({"POSTGRESQL_POOL_SIZE": "40", "POSTGRESQL_TIMEOUT": "45"},
                 postgres_workload="mixed")  # 100 connections: 50 for the pools
    assert (b.default_pool_size, b.query_wait_timeout) == (40, 45)  # above half the pools' share
    # An explicit pgbouncer_* key wins over the application's value.
    b = settings({"POSTGRESQL_POOL_SIZE": "20"}, pgbouncer_default_pool_size=7,
                 pgbouncer_query_wait_timeout=5)
    assert (b.default_pool_size, b.query_wait_timeout) == (7, 5)


def test_pool_roles_cover_every_role_pg_hba_lets_in_locally() -> None:
    d = Data({**BASE, "app_user": "agents"}, env={})
    app = app_settings(d)
    b = pgbouncer_settings(d, app, postgres_settings(d))
    assert set(postgres.hba_roles(app)) | {roles.MONITOR, roles.OPS, b.auth_user} \
        == set(b.pool_users)
    assert b.server_connections == 150  # max_db_connections caps 6 roles x (70 + 5)


@pytest.mark.parametrize(("data", "expected"), [
    ({}, 300),  # PGTune's oltp default
    ({"postgres_workload": "dw"}, 40),
    ({"postgres_overrides": {"max_connections": "120"}}, 120),
])
def test_planned_max_connections(data: dict[str, Any], expected: int) -> None:
    assert planned_max_connections(postgres_settings(Data({**BASE, **data}, env={}))) == expected


def test_sizing_guard_names_the_numbers() -> None:
    with pytest.raises(SettingsError) as err:
        settings({"POSTGRESQL_POOL_SIZE": "500"}, postgres_overrides={"max_connections": "100"})
    assert str(err.value) == (
        "settings error: pgbouncer_default_pool_size = 500 (from POSTGRESQL_POOL_SIZE): "
        "500 pool + 5 reserve exceed pgbouncer_max_db_connections 50 (max_connections 100): "
        "the pool could never fill")
    with pytest.raises(SettingsError) as err:
        settings(pgbouncer_max_db_connections=120, postgres_overrides={"max_connections": "100"})
    assert str(err.value) == (
        "settings error: pgbouncer_max_db_connections = 120: 120 server connections x 1 "
        "database(s) x 1 process(es) + 3 superuser_reserved_connections = 123 exceed "
        "max_connections 100")


def test_sizing_guard_allows_an_exact_fit() -> None:
    # 125 for all pools + 3 reserved = 128
    b = settings(pgbouncer_max_db_connections=125, postgres_overrides={"max_connections": "128"})
    assert b.server_connections + 3 == b.max_connections
    with pytest.raises(SettingsError, match="= 128 exceed max_connections 127"):
        settings(pgbouncer_max_db_connections=125, postgres_overrides={"max_connections": "127"})
    # Small pools that cannot reach the cap together count for what they can open.
    b = settings(pgbouncer_default_pool_size=5, pgbouncer_reserve_pool_size=0)
    assert b.server_connections == 5 * 5


def test_sizing_guard_uses_the_reserved_connections_and_workload() -> None:
    dw = settings(postgres_workload="dw")  # dw: 40 connections, 20 for the pools
    assert (dw.max_db_connections, dw.default_pool_size) == (20, 10)
    assert dw.server_connections + 3 <= dw.max_connections == 40
    with pytest.raises(SettingsError, match="pgbouncer_max_db_connections = 38: .* = 41 exceed"):
        settings(postgres_workload="dw", pgbouncer_max_db_connections=38)


@pytest.mark.parametrize(("data", "message"), [
    ({"pgbouncer_listen_addresses": ["*"]}, "pgbouncer_listen_addresses = '*'"),
    ({"pgbouncer_listen_addresses": ["0.0.0.0"]}, "exposes every interface"),
    ({"pgbouncer_port": 5432}, "must differ from postgres_port 5432"),
    ({"pgbouncer_pool_mode": "sometimes"}, "expected one of session, transaction, statement"),
    ({"pgbouncer_stats_users": "bg_agents_monitor"}, "expected a list of role names"),
    ({"pgbouncer_stats_users": ["pgbouncer"]}, "the auth_user only looks passwords up"),
    ({"pgbouncer_server_reset_query": "DISCARD ALL; DROP TABLE x"}, "one SQL statement"),
    ({"postgres_overrides": {"max_connections": "lots"}}, "max_connections = 'lots'"),
])
def test_bad_values_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        settings(**data)


def ini(**data: Any) -> str:
    d = Data({**BASE, **data}, env={})
    return pgbouncer.render_ini(pgbouncer_settings(d, app_settings(d), postgres_settings(d)),
                                postgres_settings(d), "10.0.0.5")


def ini_values(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines()
             if "=" in line and not line.startswith(";"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_ini_pools_tls_and_auth() -> None:
    values = ini_values(ini())
    expected = {
        "listen_addr": "10.0.0.5,127.0.0.1", "listen_port": "6432",
        "auth_type": "scram-sha-256", "auth_file": "/etc/pgbouncer/userlist.txt",
        "auth_query": "SELECT usename, passwd FROM pgbouncer.user_search($1)",
        "admin_users": "", "stats_users": "bg_agents_monitor",
        "pool_mode": "transaction", "default_pool_size": "70", "reserve_pool_size": "5",
        "max_db_connections": "150",
        "max_client_conn": "10100", "query_wait_timeout": "30", "server_reset_query": "DISCARD ALL",
        "client_tls_sslmode": "require",
        "client_tls_cert_file": "/etc/postgresql/15/main/bgdb-server.crt",
        "client_tls_key_file": "/etc/postgresql/15/main/bgdb-server.key",
        "client_tls_ca_file": "/etc/postgresql/15/main/bgdb-ca.crt",
    }
    assert {k: values.get(k) for k in expected} == expected
    # Over PostgreSQL's local socket, with the auth_user on the database: never global, which
    # lets any client crash PgBouncer 1.18 via the admin console.
    assert values["background_agents"] == ("host=/var/run/postgresql port=5432 "
                                           "dbname=background_agents auth_user=pgbouncer")
    assert "auth_user" not in values
    assert "trust" not in ini() and "any" not in values.values()


def test_ini_listen_override_and_restart_detection() -> None:
    default = pgbouncer.restart_settings(ini().splitlines())
    assert default == {"listen_addr": "10.0.0.5,127.0.0.1", "listen_port": "6432",
                       "unix_socket_dir": "/var/run/postgresql"}
    # A pool change is a reload; a listen change a restart; a missing file a restart.
    assert pgbouncer.restart_settings(ini(pgbouncer_default_pool_size=20).splitlines()) == default
    moved = pgbouncer.restart_settings(ini(pgbouncer_listen_addresses=["10.0.0.9"]).splitlines())
    assert moved["listen_addr"] == "10.0.0.9" and moved != default
    assert pgbouncer.restart_settings(None) != default


def test_fleet_sizes_client_connections_file_limit_and_role_limit() -> None:
    """The seed's fleet (agents x POSTGRESQL_POOL_SIZE) fits through PgBouncer, not a constant;
    the app role's limit adds PgBouncer's server connections to the direct clients' share."""
    b = settings({"POSTGRESQL_POOL_SIZE": "4"}, app_max_agents=3000)
    assert b.max_client_conn == 3000 * 4 + 100
    text = render("pgbouncer.service.conf.j2", bouncer=b)
    limit = int(re.search(r"^LimitNOFILE=(\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert limit >= b.max_client_conn + b.server_connections
    assert settings(pgbouncer_max_client_conn=500).max_client_conn == 500  # set: kept
    d = Data({**BASE, "postgres_app_connection_limit": 150}, env={})
    pg = postgres_settings(d)
    assert app_role_connection_limit(pg, pgbouncer_settings(d, app_settings(d), pg)) \
        == 150 + (70 + 5)


@pytest.mark.parametrize(("data", "pool"), [
    ({}, 70),  # oltp: 300 connections, 150 for all pools, half of that less the reserve
    ({"postgres_workload": "mixed"}, 20),  # 100: 50 for the pools
    ({"postgres_workload": "dw"}, 10),  # 40: never below the seed's POSTGRESQL_POOL_SIZE
    ({"app_pool_size": 90}, 90),
    ({"pgbouncer_default_pool_size": 12}, 12),  # set: kept
])
def test_server_pool_feeds_group_commit_within_half_the_server(data: dict[str, Any],
                                                               pool: int) -> None:
    b = settings(**data)
    assert b.default_pool_size == pool
    # The application's pool fills; the other roles' pools share what is left under the cap.
    assert b.server_connections <= b.max_db_connections == b.max_connections // 2
    assert b.max_db_connections - (pool + 5) >= min(pool, 5)


@pytest.mark.parametrize(("candidate", "rendered"), [
    ("1.24.1-1", "max_prepared_statements = 200"), ("1.21.0-1", "max_prepared_statements = 200"),
    ("1.18.0-1", None), ("1.15.0-2", None), ("", None)])
def test_prepared_statements_only_where_pgbouncer_has_them(candidate: str,
                                                           rendered: str | None) -> None:
    d = Data(BASE, env={})
    pg = postgres_settings(d)
    text = pgbouncer.render_ini(pgbouncer_settings(d, app_settings(d), pg), pg, "10.0.0.5",
                                pgbouncer.supports_prepared_statements(candidate))
    found = [line for line in text.splitlines() if line.startswith("max_prepared_statements")]
    assert found == ([rendered] if rendered else [])
    off = Data({**BASE, "pgbouncer_max_prepared_statements": 0}, env={})
    text = pgbouncer.render_ini(pgbouncer_settings(off, app_settings(off), pg), pg, "10.0.0.5",
                                True)
    assert not re.search(r"^max_prepared_statements", text, re.M)  # 0: off, even on 1.24


def test_unit_drop_in_raises_the_file_limit() -> None:
    b = settings(pgbouncer_max_client_conn=5000)
    text = render("pgbouncer.service.conf.j2", bouncer=b)
    limit = int(re.search(r"^LimitNOFILE=(\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert limit >= 5000 + b.server_connections and "Restart=on-failure" in text


def test_auth_verifier_is_stable_per_password_and_keyed(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDB_SECRETS_DIR", str(tmp_path / "a"))
    first = pgbouncer.auth_verifier("pgbouncer", "s3cret")
    assert scram.matches("s3cret", first)
    assert pgbouncer.auth_verifier("pgbouncer", "s3cret") == first  # a second deploy: no change
    assert pgbouncer.auth_verifier("pgbouncer", "rotated") != first
    assert pgbouncer.auth_verifier("bg_agents_monitor", "s3cret") != first
    # Another secrets directory (another salt key): another salt for the same password.
    monkeypatch.setenv("BGDB_SECRETS_DIR", str(tmp_path / "b"))
    assert pgbouncer.auth_verifier("pgbouncer", "s3cret") != first


def test_auth_file_holds_only_verifiers() -> None:
    one, two = scram.verifier("a"), scram.verifier("b")
    text = render("pgbouncer-userlist.txt.j2", entries=[("pgbouncer", one), ("mon", two)])
    assert text == f'"pgbouncer" "{one}"\n"mon" "{two}"\n'
    assert pgbouncer.parse_auth_file(text.splitlines()) == {"pgbouncer": one, "mon": two}


def test_auth_objects_query_pins_the_sql_file_version() -> None:
    query = pgbouncer.auth_objects_ok_query("pgbouncer")
    assert f"'bgdb:{pgbouncer.sql_checksum()}'" in query
    assert "prosecdef" in query and "has_function_privilege('public'" in query
