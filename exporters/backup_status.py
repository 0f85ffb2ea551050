"""Backup freshness from a JSON status file written by the backup timers (pure parsing).

The file is optional (``backup_status_file``). It is either the output of
``pgbackrest --stanza=S info --output=json`` as is (a JSON list of stanzas), or an object:

    {
      "pgbackrest_info": [ ...pgbackrest info --output=json... ],   # optional
      "full_backup_timestamp": 1700000000,   # optional, overrides what pgbackrest_info says
      "diff_backup_timestamp": 1700000000,   # optional (differential or incremental)
      "verify_timestamp": 1700000000,        # last `pgbackrest verify` run
      "verify_ok": true,                     # its result
      "dump_timestamp": 1700000000,          # last pg_dump that passed `pg_restore --list`
      "dump_bytes": 123456
    }

Timestamps are Unix seconds or ISO 8601 strings with a zone. Only successful runs should be
written (the timers write after success); pgBackRest backups flagged ``"error": true`` are
ignored. With several stanzas, each figure is the worst (oldest) one.
A missing or unreadable file gives no backup metrics and increments
bgdb_backup_status_errors_total (and bgdb_backup_status_ok 0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any


class BackupStatusError(ValueError):
    pass


def _timestamp(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise BackupStatusError(f"{key}: not a timestamp: {value!r}")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BackupStatusError(f"{key}: not a timestamp: {value!r}") from None
        if parsed.tzinfo is None:
            raise BackupStatusError(f"{key}: timestamp without a time zone: {value!r}")
        return parsed.timestamp()
    raise BackupStatusError(f"{key}: not a timestamp: {value!r}")


def _from_pgbackrest(info: Any) -> dict[str, float]:
    if not isinstance(info, list):
        raise BackupStatusError("pgbackrest info: expected a list of stanzas")
    newest: dict[str, list[float]] = {"full": [], "diff": [], "any": []}
    status: list[float] = []
    for stanza in info:
        if not isinstance(stanza, Mapping):
            raise BackupStatusError("pgbackrest info: a stanza is not an object")
        code = (stanza.get("status") or {}).get("code")
        if isinstance(code, int):
            status.append(float(code))
        best: dict[str, float] = {}
        for backup in stanza.get("backup") or []:
            if not isinstance(backup, Mapping) or backup.get("error") is True:
                continue
            stop = _timestamp((backup.get("timestamp") or {}).get("stop"), "backup.timestamp.stop")
            kind = "full" if backup.get("type") == "full" else "diff"
            for k in (kind, "any"):
                best[k] = max(best.get(k, stop), stop)
        for k, v in best.items():
            newest[k].append(v)
    out: dict[str, float] = {}
    for k, values in newest.items():
        if values:
            out[f"{k}_backup_timestamp"] = min(values)  # the worst stanza
    if status:
        out["stanza_status"] = max(status)
    return out


def parse(data: Any) -> dict[str, float]:
    """Raw figures (timestamps, flags, sizes) from the file's JSON document."""
    if isinstance(data, list):
        return _from_pgbackrest(data)
    if not isinstance(data, Mapping):
        raise BackupStatusError("expected a JSON object or a pgbackrest info list")
    out: dict[str, float] = {}
    if "pgbackrest_info" in data:
        out.update(_from_pgbackrest(data["pgbackrest_info"]))
    for key in ("full_backup_timestamp", "diff_backup_timestamp", "verify_timestamp",
                "dump_timestamp"):
        if data.get(key) is not None:
            out[key] = _timestamp(data[key], key)
    if data.get("verify_ok") is not None:
        if not isinstance(data["verify_ok"], bool):
            raise BackupStatusError(f"verify_ok: expected true/false, got {data['verify_ok']!r}")
        out["verify_ok"] = 1.0 if data["verify_ok"] else 0.0
    if data.get("dump_bytes") is not None:
        if not isinstance(data["dump_bytes"], (int, float)) or isinstance(data["dump_bytes"], bool):
            raise BackupStatusError(f"dump_bytes: expected a number, got {data['dump_bytes']!r}")
        out["dump_bytes"] = float(data["dump_bytes"])
    # A full backup is also the newest backup "of any kind" when nothing newer is known.
    candidates = [out[k] for k in ("full_backup_timestamp", "diff_backup_timestamp",
                                   "any_backup_timestamp") if k in out]
    if candidates:
        out["any_backup_timestamp"] = max(candidates)
    return out


# figure -> (metric name, help); timestamps also give an _age_seconds metric.
TIMESTAMP_METRICS: dict[str, tuple[str, str]] = {
    "full_backup_timestamp": ("bgdb_backup_last_full", "last successful full backup"),
    "diff_backup_timestamp": ("bgdb_backup_last_diff",
                              "last successful differential or incremental backup"),
    "any_backup_timestamp": ("bgdb_backup_last", "last successful backup of any type"),
    "verify_timestamp": ("bgdb_backup_verify_last", "last pgbackrest verify run"),
    "dump_timestamp": ("bgdb_dump_last", "last successful logical dump"),
}
PLAIN_METRICS: dict[str, tuple[str, str]] = {
    "verify_ok": ("bgdb_backup_verify_last_ok", "1 if the last pgbackrest verify passed."),
    "dump_bytes": ("bgdb_dump_last_size_bytes", "Size of the last logical dump."),
    "stanza_status": ("bgdb_backup_stanza_status_code",
                      "pgBackRest stanza status code (0 = ok), the worst stanza."),
}


def metrics(figures: Mapping[str, float], now: float) -> list[tuple[str, str, float]]:
    """(metric name, help, value) gauges for the figures, ages relative to ``now``."""
    out: list[tuple[str, str, float]] = []
    for key, (name, what) in TIMESTAMP_METRICS.items():
        if key in figures:
            out.append((f"{name}_timestamp_seconds", f"Time of the {what}, Unix time.",
                        figures[key]))
            out.append((f"{name}_age_seconds", f"Seconds since the {what}.",
                        max(0.0, now - figures[key])))
    for key, (name, help_) in PLAIN_METRICS.items():
        if key in figures:
            out.append((name, help_, figures[key]))
    return out


def read(path: str | Path) -> dict[str, float]:
    """Figures from the file; raises OSError or BackupStatusError."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BackupStatusError(f"{path}: not valid JSON: {exc}") from None
    return parse(data)
