"""The sizing check compares the deploy's values the way PostgreSQL stores them."""

from __future__ import annotations

import pytest

from checks.test_postgres import _as_unit


@pytest.mark.parametrize(("value", "unit", "shown"), [
    ("6170948kB", "8kB", "771368"),     # 771368.5 pages: rint rounds half to even
    ("18512844kB", "8kB", "2314106"),   # 2314105.5 -> 2314106
    ("4096kB", "kB", "4096"),
    ("2GB", "MB", "2048"),
    ("16MB", "8kB", "2048"),
    ("200", "", "200"),
    ("1.1", "", "1.1"),
])
def test_values_in_pg_settings_units(value: str, unit: str, shown: str) -> None:
    assert _as_unit(value, unit) == shown
