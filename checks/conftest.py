"""Hosts come from the same inventory as the deploy; expectations from the same settings."""

from __future__ import annotations

import pytest

from bgdb.remote import Target
from checks import ha
from checks.report import ReadinessReport
from deploy.hostdata import load_inventory

DB_GROUPS = {"postgres_primary", "postgres_replicas"}


def _targets(groups: set[str]) -> list[Target]:
    return [Target(h) for h in load_inventory() if groups & set(h.groups)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db" in metafunc.fixturenames:
        targets = _targets(DB_GROUPS)
        metafunc.parametrize("db", targets, ids=[t.name for t in targets], scope="session")
    if "backup_host" in metafunc.fixturenames:  # none without a host in group `backup`
        targets = _targets({"backup"})
        metafunc.parametrize("backup_host", targets, ids=[t.name for t in targets],
                             scope="session")
    if "monitor" in metafunc.fixturenames:  # none without a host in group `monitoring`
        targets = _targets({"monitoring"})
        metafunc.parametrize("monitor", targets, ids=[t.name for t in targets], scope="session")
    if "primary" in metafunc.fixturenames:
        # HA mode: whoever leads now (Patroni), none when no member leads.
        leader = ha.leader() if ha.members() else None
        targets = ([leader] if leader else []) if ha.members() else _targets({"postgres_primary"})
        metafunc.parametrize("primary", targets, ids=[t.name for t in targets], scope="session")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--readiness-report", dest="readiness_report",
                     default="reports/readiness.md", help="where to write the Markdown report")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(ReadinessReport(config), "bgdb-readiness-report")
