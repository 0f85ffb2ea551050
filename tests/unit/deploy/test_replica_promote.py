"""The promotion command's pure parts: LSN arithmetic and which replica may be promoted."""

from __future__ import annotations

import pytest

from bgdb.promote import Position, ahead_of, lsn


@pytest.mark.parametrize(("text", "value"), [
    ("0/0", 0), ("0/3000148", 0x3000148), ("16/B374D848", (0x16 << 32) + 0xB374D848), ("", 0),
])
def test_lsn(text: str, value: int) -> None:
    assert lsn(text) == value


def test_ahead_of_names_replicas_that_received_more() -> None:
    positions = {"r1": Position(True, lsn("0/500"), lsn("0/500")),
                 "r2": Position(True, lsn("0/600"), lsn("0/580")),
                 "r3": Position(True, lsn("0/500"), lsn("0/400"))}
    assert ahead_of("r1", positions) == ["r2"]
    assert ahead_of("r2", positions) == []
    assert ahead_of("r3", positions) == ["r2"]


def test_format_lsn_round_trips() -> None:
    from bgdb.promote import format_lsn

    assert format_lsn(lsn("16/B374D848")) == "16/B374D848"
    assert format_lsn(0) == "0/0"
