"""Fixture for the schema/migration tests: a scratch database with every migration applied."""

from __future__ import annotations

import pytest

from tests.integration.bgdb.helpers import apply


@pytest.fixture
def migrated_dsn(scratch_dsn: str) -> str:
    apply(scratch_dsn)
    return scratch_dsn
