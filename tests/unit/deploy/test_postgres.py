from __future__ import annotations

import pytest

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
