"""Fixtures shared by every test; the sandbox ones live in tests/sandbox_fixtures.py."""

from __future__ import annotations

import pytest

from tests.sandbox_fixtures import deployed, pg_admin_dsn, sandbox_lab, scratch_dsn

__all__ = ["deployed", "pg_admin_dsn", "sandbox_lab", "scratch_dsn"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration needs hosts; mark it so `-m "not integration"` is fast.
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
