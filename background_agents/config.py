"""The adapter's settings, read from the seed's POSTGRESQL_* environment variables.

    POSTGRESQL_HOST          localhost
    POSTGRESQL_PORT          5432 (6432 for PgBouncer)
    POSTGRESQL_DATABASE      background_agents
    POSTGRESQL_USER          bg_agents_user
    POSTGRESQL_PASSWORD      (none: libpq then tries ~/.pgpass)
    POSTGRESQL_SSL_MODE      verify-full
    POSTGRESQL_SSL_ROOT_CERT the bundle's CA (.secrets/ca/ca.crt, /etc/bgdb/ca.crt on the hosts);
                             default ~/.postgresql/root.crt, libpq's own default
    POSTGRESQL_POOL_SIZE     10 (connections this process may open)
    POSTGRESQL_TIMEOUT       30 (seconds: connect, wait for a pooled connection, retry budget)

A bad value raises ConfigError naming the variable, the value and what is allowed, before any
connection is attempted. The password never appears in repr() or in error messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Modes in which libpq checks the server certificate against the root certificate.
VERIFYING_SSL_MODES = ("verify-ca", "verify-full")
DEFAULT_ROOT_CERT = "~/.postgresql/root.crt"


class ConfigError(ValueError):
    """A POSTGRESQL_* value is invalid; the message names the variable and what is allowed."""

    def __init__(self, variable: str, value: object, allowed: str) -> None:
        self.variable = variable
        super().__init__(f"config error: {variable} = {value!r}: {allowed}")


def _integer(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, raw, f"expected an integer {lo}-{hi}") from None
    if not lo <= value <= hi:
        raise ConfigError(name, raw, f"expected an integer {lo}-{hi}")
    return value


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip()
    return raw or default


@dataclass(frozen=True)
class AdapterConfig:
    """Connection, pool and retry settings of one PostgreSQLAdapter."""

    host: str = "localhost"
    port: int = 5432
    database: str = "background_agents"
    user: str = "bg_agents_user"
    password: str | None = field(default=None, repr=False)
    ssl_mode: str = "verify-full"
    ssl_root_cert: str | None = None  # None: libpq's default, ~/.postgresql/root.crt
    pool_size: int = 10
    pool_min_size: int = 1
    timeout: float = 30.0
    application_name: str = "background-agents"
    # Retries of transient failures: at most max_attempts tries within `timeout` seconds, sleeping
    # a random time up to min(retry_max_delay, retry_base_delay * 2**n) between them.
    max_attempts: int = 6
    retry_base_delay: float = 0.05
    retry_max_delay: float = 2.0
    # Extra libpq parameters (e.g. {"options": "-c role=x"} for tests). PgBouncer rejects
    # unknown startup parameters such as `options`, so nothing is added here by default.
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ssl_mode not in SSL_MODES:
            raise ConfigError("POSTGRESQL_SSL_MODE", self.ssl_mode,
                              f"expected one of {', '.join(SSL_MODES)}")
        if not 1 <= self.port <= 65535:
            raise ConfigError("POSTGRESQL_PORT", self.port, "expected an integer 1-65535")
        if self.pool_size < 1:
            raise ConfigError("POSTGRESQL_POOL_SIZE", self.pool_size, "expected at least 1")
        if not 0 <= self.pool_min_size <= self.pool_size:
            raise ConfigError("pool_min_size", self.pool_min_size,
                              f"expected 0-{self.pool_size} (POSTGRESQL_POOL_SIZE)")
        if self.timeout <= 0:
            raise ConfigError("POSTGRESQL_TIMEOUT", self.timeout, "expected seconds > 0")
        if self.max_attempts < 1:
            raise ConfigError("max_attempts", self.max_attempts, "expected at least 1")
        if self.retry_base_delay < 0 or self.retry_max_delay < self.retry_base_delay:
            raise ConfigError("retry_max_delay", self.retry_max_delay,
                              "expected 0 <= retry_base_delay <= retry_max_delay")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> AdapterConfig:
        """Settings from the POSTGRESQL_* variables (os.environ by default); keyword arguments
        override them (e.g. pool_size=1 for a one-connection agent)."""
        env = os.environ if env is None else env
        ssl_mode = _text(env, "POSTGRESQL_SSL_MODE", "verify-full")
        if ssl_mode not in SSL_MODES:
            raise ConfigError("POSTGRESQL_SSL_MODE", ssl_mode,
                              f"expected one of {', '.join(SSL_MODES)}")
        root_cert = env.get("POSTGRESQL_SSL_ROOT_CERT", "").strip() or None
        if ssl_mode in VERIFYING_SSL_MODES:
            # Fail here, naming the variable, rather than with libpq's message at first connect.
            path = Path(root_cert or DEFAULT_ROOT_CERT).expanduser()
            if not path.is_file():
                raise ConfigError(
                    "POSTGRESQL_SSL_ROOT_CERT", root_cert or DEFAULT_ROOT_CERT,
                    f"sslmode {ssl_mode} needs the CA certificate file (the bundle's ca.crt)")
            root_cert = str(path)
        config = cls(
            host=_text(env, "POSTGRESQL_HOST", "localhost"),
            port=_integer(env, "POSTGRESQL_PORT", 5432, 1, 65535),
            database=_text(env, "POSTGRESQL_DATABASE", "background_agents"),
            user=_text(env, "POSTGRESQL_USER", "bg_agents_user"),
            password=env.get("POSTGRESQL_PASSWORD") or None,
            ssl_mode=ssl_mode,
            ssl_root_cert=root_cert,
            pool_size=_integer(env, "POSTGRESQL_POOL_SIZE", 10, 1, 10000),
            timeout=float(_integer(env, "POSTGRESQL_TIMEOUT", 30, 1, 3600)),
        )
        return replace(config, **overrides) if overrides else config

    def conninfo(self) -> str:
        """The libpq connection string (contains the password: never log it)."""
        params: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.user,
            "sslmode": self.ssl_mode,
            "connect_timeout": max(1, int(self.timeout)),
            "application_name": self.application_name,
            # A server that vanished mid-statement (host down, network cut, the address moved
            # to a new leader) fails the statement within seconds, not after TCP's ~15 minutes
            # of retransmissions: the retry layer then establishes its outcome elsewhere.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        }
        if self.password is not None:
            params["password"] = self.password
        if self.ssl_root_cert:
            params["sslrootcert"] = self.ssl_root_cert
        params.update(self.extra)
        return make_conninfo(**params)  # type: ignore[arg-type]

    def describe(self) -> str:
        """Where this config connects, for messages (no password)."""
        return (f"{self.user}@{self.host}:{self.port}/{self.database} "
                f"(sslmode={self.ssl_mode}, pool={self.pool_size})")
