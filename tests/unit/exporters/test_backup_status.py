"""Backup status file -> backup freshness figures and gauges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporters import backup_status
from exporters.backup_status import BackupStatusError, metrics, parse

# Trimmed output of `pgbackrest info --output=json` (pgBackRest 2.4x).
PGBACKREST_INFO: list[dict[str, Any]] = [
    {
        "name": "main",
        "status": {"code": 0, "message": "ok"},
        "backup": [
            {"label": "20240101-010000F", "type": "full",
             "timestamp": {"start": 1704070800, "stop": 1704071000}, "error": False},
            {"label": "20240101-010000F_20240102-010000D", "type": "diff",
             "timestamp": {"start": 1704157200, "stop": 1704157300}, "error": False},
            {"label": "20240101-010000F_20240103-010000D", "type": "diff",
             "timestamp": {"start": 1704243600, "stop": 1704243700}, "error": True},
        ],
    }
]


def test_pgbackrest_info_as_is() -> None:
    figures = parse(PGBACKREST_INFO)
    assert figures["full_backup_timestamp"] == 1704071000
    assert figures["diff_backup_timestamp"] == 1704157300  # the failed one is ignored
    assert figures["any_backup_timestamp"] == 1704157300
    assert figures["stanza_status"] == 0


def test_object_with_timer_figures() -> None:
    figures = parse({
        "pgbackrest_info": PGBACKREST_INFO,
        "verify_timestamp": "2024-01-07T03:00:00+00:00",
        "verify_ok": False,
        "dump_timestamp": 1704250000,
        "dump_bytes": 123456,
    })
    assert figures["verify_timestamp"] == 1704596400
    assert figures["verify_ok"] == 0
    assert figures["dump_bytes"] == 123456
    assert figures["full_backup_timestamp"] == 1704071000


def test_worst_stanza_wins() -> None:
    second = json.loads(json.dumps(PGBACKREST_INFO[0]))
    second["name"] = "other"
    second["status"] = {"code": 2, "message": "no valid backups"}
    second["backup"] = [second["backup"][0] | {"timestamp": {"start": 1, "stop": 100}}]
    figures = parse([PGBACKREST_INFO[0], second])
    assert figures["full_backup_timestamp"] == 100
    assert figures["stanza_status"] == 2


def test_gauges_and_ages() -> None:
    now = 1704157300 + 60
    out = {name: value for name, _, value in metrics(parse(PGBACKREST_INFO), now)}
    assert out["bgdb_backup_last_full_age_seconds"] == now - 1704071000
    assert out["bgdb_backup_last_full_timestamp_seconds"] == 1704071000
    assert out["bgdb_backup_last_diff_age_seconds"] == 60
    assert out["bgdb_backup_last_age_seconds"] == 60
    assert out["bgdb_backup_stanza_status_code"] == 0
    assert "bgdb_dump_last_age_seconds" not in out
    # A stop time in the future (clock skew) gives age 0, never a negative age.
    skewed = {n: v for n, _, v in metrics(parse(PGBACKREST_INFO), 1704071000)}
    assert skewed["bgdb_backup_last_age_seconds"] == 0


def test_dump_only() -> None:
    out = {n: v for n, _, v in metrics(parse({"dump_timestamp": 1000, "dump_bytes": 5}), 1600)}
    assert out == {
        "bgdb_dump_last_timestamp_seconds": 1000,
        "bgdb_dump_last_age_seconds": 600,
        "bgdb_dump_last_size_bytes": 5,
    }


@pytest.mark.parametrize(
    "data",
    [
        "text",
        {"dump_timestamp": "yesterday"},
        {"dump_timestamp": "2024-01-01T00:00:00"},  # no zone
        {"dump_timestamp": True},
        {"verify_ok": "yes"},
        {"dump_bytes": "many"},
        {"pgbackrest_info": {"not": "a list"}},
        [{"backup": [{"type": "full", "timestamp": {}}]}],
    ],
)
def test_invalid_documents(data: Any) -> None:
    with pytest.raises(BackupStatusError):
        parse(data)


def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    with pytest.raises(OSError):
        backup_status.read(path)
    path.write_text("{")
    with pytest.raises(BackupStatusError):
        backup_status.read(path)
    path.write_text(json.dumps({"full_backup_timestamp": 42}))
    assert backup_status.read(path) == {"full_backup_timestamp": 42, "any_backup_timestamp": 42}
