from __future__ import annotations

import shlex

import pytest

from deploy.pgsql import PsqlRows
from deploy.postgres import timeline_behind


@pytest.mark.parametrize(("found", "expected"), [
    ([["f", "1", "2"]], True),  # promoted, no checkpoint on timeline 2 yet
    ([["f", "2", "2"]], False),
    ([["t", "1", ""]], False),  # a standby: its restartpoints follow the primary's timeline
    ([["f", "9", "10"]], True),  # numbers, not strings
    (None, False),  # server down
    ([], False),
])
def test_timeline_behind(found: list[list[str]] | None, expected: bool) -> None:
    assert timeline_behind(found) is expected


def test_psql_rows_asks_for_a_tab_separator_that_sh_understands() -> None:
    """pyinfra runs facts with `sh -c` (dash on Debian): bash's $'\\t' would reach psql as the
    three characters `$\\t`, every row would be one column and timeline_behind always False."""
    words = shlex.split(PsqlRows().command(query="SELECT 1, 2", port=5432))
    assert words[words.index("-F") + 1] == "\t"
