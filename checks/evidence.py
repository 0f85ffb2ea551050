"""Readiness evidence that no host state shows: a recent load test of the primary that met the
seed's KPIs (bench/load_agents.py's evidence file) and a recent successful restore of the
primary's backups (the record bgdb.restore leaves on the primary).

Plain functions over plain data, so the unit tests feed them files; each returns None when the
evidence holds, else one message saying what is wrong (path, age, figure against threshold).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.settings import ReadinessSettings

RESTORE_RECORD = "restore-drill.json"  # in backup_status_dir on the restored repository's host


@dataclass(frozen=True)
class Primary:
    name: str
    addresses: Collection[str]  # what a load test may name it by (address, host name)
    database: str


def age_text(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time (Z or an offset) or epoch seconds; None if it is neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def split_where(where: str) -> tuple[str, str]:
    """bench/load_agents.py's 'host:port/dbname' -> (host, dbname)."""
    hostport, _, db = where.partition("/")
    host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
    return host.strip("[]"), db


def _number(run: Mapping[str, Any], key: str) -> float | None:
    value = run.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def kpi_shortfalls(run: Mapping[str, Any], rs: ReadinessSettings) -> list[str]:
    """What keeps one run from meeting the KPIs, figure against threshold; [] = meets them."""
    short = []
    ops = _number(run, "tps")
    if ops is None or ops < rs.load_min_ops_per_second:
        short.append(f"{'no' if ops is None else f'{ops:,.1f}'} operations/s "
                     f"(needs >= {rs.load_min_ops_per_second:,}, "
                     f"readiness_load_min_ops_per_second)")
    p95 = _number(run, "p95_ms")
    if p95 is None or p95 >= rs.load_max_p95_ms:
        short.append(f"p95 {'missing' if p95 is None else f'{p95:.1f} ms'} "
                     f"(needs < {rs.load_max_p95_ms} ms, readiness_load_max_p95_ms)")
    errors = _number(run, "errors")
    operations = _number(run, "operations") or 0.0
    if errors is None:
        short.append("no error count")
    else:
        percent = 100.0 * errors / (operations + errors) if operations + errors else 100.0
        if percent >= rs.load_max_error_percent and errors > 0:
            short.append(f"error rate {percent:.1f} % ({errors:.0f} errors in "
                         f"{operations + errors:.0f} operations; needs < "
                         f"{rs.load_max_error_percent} %, readiness_load_max_error_percent)")
    return short


def load_evidence_problem(path: Path, primary: Primary, rs: ReadinessSettings,
                          now: datetime) -> str | None:
    """None if a run against the primary, measured within the max age, met every KPI."""
    max_age = rs.load_evidence_max_age_days * 86400
    target = f"{primary.name}'s database {primary.database}"
    if not path.exists():
        return (f"no load test evidence: {path} is missing (run bench/load_agents.py against "
                f"{target}; readiness_load_evidence)")
    try:
        doc = json.loads(path.read_text())
        results = doc["results"]
        if not isinstance(results, list):
            raise TypeError("results is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{path} is not bench/load_agents.py evidence ({type(exc).__name__}: {exc})"
    ours = [r for r in results if isinstance(r, dict) and isinstance(r.get("where"), str)
            and split_where(r["where"])[0] in primary.addresses
            and split_where(r["where"])[1] == primary.database]
    if not ours:
        elsewhere = sorted({str(r.get("where")) for r in results if isinstance(r, dict)})
        return (f"no load test of {target} ({', '.join(sorted(primary.addresses))}); the "
                f"evidence's runs were against {', '.join(elsewhere) or 'nothing'} ({path})")
    dated = [(r, parse_time(r.get("measured_at"))) for r in ours]
    fresh = [r for r, at in dated if at is not None and (now - at).total_seconds() <= max_age]
    if not fresh:
        times = [at for _, at in dated if at is not None]
        newest = max(times) if times else None
        when = (f"{age_text((now - newest).total_seconds())} old (measured_at "
                f"{newest:%Y-%m-%d %H:%M} UTC)" if newest else "undated")
        return (f"the last load test of {target} is {when}; the limit is "
                f"{rs.load_evidence_max_age_days} days (readiness_load_evidence_max_age_days; "
                f"{path})")
    if any(not kpi_shortfalls(r, rs) for r in fresh):
        return None
    best = max(fresh, key=lambda r: _number(r, "tps") or 0.0)
    return (f"no recent load test of {target} met the KPIs: "
            + "; ".join(kpi_shortfalls(best, rs))
            + f" (best run: {best.get('where')}, {best.get('agents')} agents, "
              f"{best.get('measured_at')}; {path})")


def restore_record_problem(record_text: str | None, where: str, rs: ReadinessSettings,
                           now: datetime) -> str | None:
    """None if the record (bgdb.restore's, on the primary) shows a successful restore within
    the max age, with rows read back from the restored database."""
    max_age = rs.restore_drill_max_age_days * 86400
    hint = "run a restore drill: python -m bgdb.restore --to <spare host> (README, Backups)"
    if record_text is None:
        return f"no restore of this primary's backups has been recorded ({where} is missing): " \
               f"{hint}"
    try:
        record = json.loads(record_text)
        if not isinstance(record, dict):
            raise TypeError("not an object")
    except (ValueError, TypeError) as exc:
        return f"{where} is not a restore record ({exc})"
    last = record.get("last_success")
    at = parse_time(last.get("finished_at")) if isinstance(last, dict) else None
    failed = "" if record.get("ok") else \
        f"; the last attempt failed at {record.get('finished_at')}: {record.get('message')}"
    if not isinstance(last, dict) or at is None:
        return f"no restore of this primary's backups has succeeded yet ({where}){failed}: {hint}"
    age = (now - at).total_seconds()
    if age > max_age:
        return (f"the last successful restore (backup {last.get('backup_label')} onto "
                f"{last.get('target')}) is {age_text(age)} old ({where}); the limit is "
                f"{rs.restore_drill_max_age_days} days (readiness_restore_drill_max_age_days)"
                f"{failed}: {hint}")
    if not isinstance(last.get("rows_verified"), int) or last["rows_verified"] <= 0 \
            or not last.get("backup_label"):
        return (f"the last restore ({where}, {last.get('finished_at')}) names no backup label "
                f"or read no rows back from the restored database: not a tested restore")
    return None
