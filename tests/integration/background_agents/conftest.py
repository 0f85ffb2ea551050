"""Fixtures for the client library's tests: a migrated scratch database and adapter settings
that act as the agents' least-privileged role.

The scratch DSN is a superuser's; the adapter connects with it but with `-c role=<app user>`
(libpq `options`), so every statement runs with bg_agents_user's privileges, without setting or
knowing that role's password (the deployed sandbox manages it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from background_agents.config import AdapterConfig
from bgdb import migrate

APP_USER = migrate.DEFAULT_APP_USER
ROLE_OPTION = f"-c role={APP_USER}"


@pytest.fixture
def agents_dsn(scratch_dsn: str) -> str:
    """A scratch database with roles and every migration applied."""
    with migrate.connect(scratch_dsn) as conn:
        migrate.apply(conn, migrate.DEFAULT_DIR, app_user=APP_USER)
    return scratch_dsn


def env_for(dsn: str) -> dict[str, str]:
    """The seed's POSTGRESQL_* variables for `dsn` (a libpq connection string)."""
    p = conninfo_to_dict(dsn)
    env = {
        "POSTGRESQL_HOST": str(p.get("host", "localhost")),
        "POSTGRESQL_PORT": str(p.get("port", "5432")),
        "POSTGRESQL_DATABASE": str(p["dbname"]),
        "POSTGRESQL_USER": str(p["user"]),
        "POSTGRESQL_SSL_MODE": str(p.get("sslmode", "prefer")),
        "POSTGRESQL_TIMEOUT": "20",
    }
    if p.get("password"):
        env["POSTGRESQL_PASSWORD"] = str(p["password"])
    if p.get("sslrootcert"):
        env["POSTGRESQL_SSL_ROOT_CERT"] = str(p["sslrootcert"])
    return env


def app_config(dsn: str, env: Mapping[str, str] | None = None, *,
               extra: Mapping[str, str] | None = None, **overrides: Any) -> AdapterConfig:
    """Adapter settings from POSTGRESQL_* for `dsn`, acting as the app role."""
    extra = {"options": ROLE_OPTION, **(extra or {})}
    return AdapterConfig.from_env(dict(env or env_for(dsn)), extra=extra,
                                  retry_max_delay=0.5, **overrides)


def subprocess_env(dsn: str) -> dict[str, str]:
    """Environment for an agent process: POSTGRESQL_* plus PGOPTIONS (read by libpq itself)."""
    env = dict(os.environ)
    env.update(env_for(dsn))
    env["PGOPTIONS"] = ROLE_OPTION
    return env
