"""Fixtures for the exporter's integration tests: a migrated scratch database, the exporter's
view of it as bg_agents_monitor, and collectors on fresh registries.

The exporter connects as the superuser of pg_admin_dsn with `options=-c role=bg_agents_monitor`:
every query runs with the monitor role's privileges (pg_monitor + read on the agent tables), and
no role is created, altered or given a password here (roles are cluster-wide and the deployed
sandbox has them).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from bgdb import migrate
from exporters.collector import BgdbCollector
from exporters.config import build_config

MONITOR = "bg_agents_monitor"


def with_params(dsn: str, **changes: Any) -> str:
    params: dict[str, Any] = dict(psycopg.conninfo.conninfo_to_dict(dsn))
    params.update(changes)
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Scrape:
    """All samples of one collection (one scrape), looked up like get_sample_value."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in registry.collect():
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.samples.get((name, frozenset((labels or {}).items())))

    def labels(self, name: str) -> list[dict[str, str]]:
        return [dict(lab) for (n, lab) in self.samples if n == name]


@pytest.fixture
def agents_dsn(scratch_dsn: str) -> str:
    """The scratch database with the schema migrated and pg_stat_statements created."""
    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    with migrate.connect(scratch_dsn) as conn:
        migrate.apply(conn, migrate.DEFAULT_DIR, app_user=migrate.DEFAULT_APP_USER)
    return scratch_dsn


@pytest.fixture
def monitor_dsn(agents_dsn: str) -> str:
    return with_params(agents_dsn, options=f"-c role={MONITOR}")


CollectorFactory = Callable[..., tuple[BgdbCollector, CollectorRegistry]]


@pytest.fixture
def make_collector(monitor_dsn: str) -> Iterator[CollectorFactory]:
    """make_collector(**settings) -> (collector, fresh registry); closed at teardown.
    ``monotonic=`` (not a setting) replaces the collector's monotonic clock."""
    made: list[BgdbCollector] = []

    def make(**settings: Any) -> tuple[BgdbCollector, CollectorRegistry]:
        settings.setdefault("dsn", monitor_dsn)
        clock = settings.pop("monotonic", time.monotonic)
        collector = BgdbCollector(build_config(settings), monotonic=clock)
        made.append(collector)
        registry = CollectorRegistry()
        registry.register(collector)
        return collector, registry

    yield make
    for collector in made:
        collector.close()
