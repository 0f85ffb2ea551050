"""Exporter settings: a JSON file, overridden by command-line flags, validated once at start.

The exporter runs on database hosts with Debian 12's python3 (3.11) and its packages only, so
this module uses the standard library alone. Every key of the JSON file has a flag of the same
name with dashes (``statement_timeout_seconds`` -> ``--statement-timeout-seconds``); a flag given
on the command line wins over the file, the file wins over the defaults below.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_PORT = 9847  # not 9187, which is postgres_exporter's
DEFAULT_DSN = "host=/var/run/postgresql dbname=background_agents user=bg_agents_monitor"
DEFAULT_SQL_DIR = Path(__file__).resolve().parent.parent / "sql" / "exporter"
# agent_heartbeat_cache_seconds' default as a share of the heartbeat interval: below half, so
# that a healthy agent's age computed from the cache stays under 1.5 intervals
# (exporters/heartbeat.py), and above a 15 s scrape interval at 60 s (one scrape in two then
# runs the search).
DEFAULT_TTL_SHARE = 0.4


class ConfigError(ValueError):
    """A setting that cannot work; the message names the key and the value."""


@dataclass(frozen=True)
class ExporterConfig:
    listen_address: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    dsn: str = DEFAULT_DSN
    pgbouncer_dsn: str | None = None
    heartbeat_interval_seconds: float = 60.0
    max_agents: int = 200
    # Seconds the per-agent heartbeat search's rows are reused, their ages advanced at each
    # scrape (exporters/heartbeat.py; 0: every scrape). None: 0.4 x heartbeat_interval_seconds.
    agent_heartbeat_cache_seconds: float | None = None
    statement_timeout_seconds: float = 2.0
    # No query starts after this much of a scrape has passed (the rest are skipped and counted);
    # one already running ends within statement_timeout + 2 s.
    scrape_timeout_seconds: float = 5.0
    long_query_seconds: float = 300.0
    top_tables: int = 20
    max_label_values: int = 50
    sql_dir: str = str(DEFAULT_SQL_DIR)
    backup_status_file: str | None = None
    # HA mode: the local Patroni's GET /patroni (exporters/patroni.py), read at each scrape.
    patroni_url: str | None = None
    basic_auth_username: str | None = None
    basic_auth_password_bcrypt: str | None = None  # as exporter-toolkit's web config
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    log_level: str = "INFO"

    @property
    def heartbeat_cache_seconds(self) -> float:
        if self.agent_heartbeat_cache_seconds is None:
            return DEFAULT_TTL_SHARE * self.heartbeat_interval_seconds
        return self.agent_heartbeat_cache_seconds

    @property
    def statement_timeout_ms(self) -> int:
        return max(1, round(self.statement_timeout_seconds * 1000))

    def sql_params(self) -> dict[str, float | int]:
        """Values SQL files may reference as %(name)s."""
        return {
            "heartbeat_interval_seconds": self.heartbeat_interval_seconds,
            "max_agents": self.max_agents,
            "long_query_seconds": self.long_query_seconds,
            "top_tables": self.top_tables,
            "max_label_values": self.max_label_values,
        }


_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(ExporterConfig)}
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _coerce(key: str, value: Any) -> Any:
    kind = _FIELD_TYPES[key]
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"{key}: must not be null")
    kind = kind.removesuffix(" | None")
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def build_config(values: Mapping[str, Any]) -> ExporterConfig:
    """Typed, validated settings from a mapping of keys to values (JSON file + flags)."""
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    cfg = ExporterConfig(**{k: _coerce(k, v) for k, v in values.items()})
    validate(cfg)
    return cfg


def validate(cfg: ExporterConfig) -> None:
    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {getattr(cfg, key)!r} {why}")

    need(1 <= cfg.port <= 65535, "port", "is not a TCP port")
    need(bool(cfg.listen_address.strip()), "listen_address", "is empty")
    need(bool(cfg.dsn.strip()), "dsn", "is empty")
    need(cfg.pgbouncer_dsn is None or bool(cfg.pgbouncer_dsn.strip()), "pgbouncer_dsn", "is empty")
    need(cfg.heartbeat_interval_seconds > 0, "heartbeat_interval_seconds", "must be > 0")
    need(1 <= cfg.max_agents <= 100_000, "max_agents", "must be between 1 and 100000")
    # Below half an interval, a healthy agent's age computed from the cache stays under 1.5
    # intervals (exporters/heartbeat.py).
    need(
        0 <= cfg.heartbeat_cache_seconds < cfg.heartbeat_interval_seconds / 2,
        "agent_heartbeat_cache_seconds",
        "must be >= 0 and below half of heartbeat_interval_seconds",
    )
    need(0 < cfg.statement_timeout_seconds <= 60, "statement_timeout_seconds", "must be in (0, 60]")
    need(
        cfg.scrape_timeout_seconds >= cfg.statement_timeout_seconds,
        "scrape_timeout_seconds",
        "must be >= statement_timeout_seconds",
    )
    need(cfg.long_query_seconds > 0, "long_query_seconds", "must be > 0")
    need(1 <= cfg.top_tables <= 1000, "top_tables", "must be between 1 and 1000")
    need(1 <= cfg.max_label_values <= 1000, "max_label_values", "must be between 1 and 1000")
    need(cfg.log_level in _LOG_LEVELS, "log_level", f"must be one of {', '.join(_LOG_LEVELS)}")
    need(
        (cfg.basic_auth_username is None) == (cfg.basic_auth_password_bcrypt is None),
        "basic_auth_username",
        "needs basic_auth_password_bcrypt too (both or neither)",
    )
    if cfg.basic_auth_password_bcrypt is not None:
        need(
            bool(_BCRYPT.match(cfg.basic_auth_password_bcrypt)),
            "basic_auth_password_bcrypt",
            "is not a bcrypt hash ($2b$<cost>$ and 53 characters)",
        )
    need(
        (cfg.tls_cert_file is None) == (cfg.tls_key_file is None),
        "tls_cert_file",
        "needs tls_key_file too (both or neither)",
    )
    for key in ("tls_cert_file", "tls_key_file"):
        path = getattr(cfg, key)
        need(path is None or Path(path).is_file(), key, "is not a readable file")
    need(Path(cfg.sql_dir).is_dir(), "sql_dir", "is not a directory")
    need(cfg.patroni_url is None or bool(re.match(r"^https?://[^/\s]+/\S*$", cfg.patroni_url)),
         "patroni_url", "is not an http(s) URL (http://ADDRESS:8008/patroni)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m exporters",
        description="Prometheus exporter for background-agents-db (agent health, database KPIs).",
    )
    p.add_argument("--config", help="JSON file with the settings below (flags override it)")
    for name in _FIELD_TYPES:
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=None)
    return p


def load_config(argv: Sequence[str] | None = None) -> ExporterConfig:
    """Settings from ``--config FILE`` and flags; raises ConfigError naming the bad key."""
    args = vars(_parser().parse_args(argv))
    values: dict[str, Any] = {}
    path = args.pop("config")
    if path:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config: {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config: {path} must hold a JSON object")
        values.update(data)
    values.update({k: v for k, v in args.items() if v is not None})
    return build_config(values)
