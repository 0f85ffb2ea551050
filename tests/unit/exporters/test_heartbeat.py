"""Per-agent heartbeat figures from a cached search: ages advanced from plain rows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from exporters.collector import families_from_rows
from exporters.heartbeat import (
    AGE,
    ALERT_MISSED,
    ERRORS,
    EXPECTED,
    LABELLED,
    MISSED,
    MISSED_MAX,
    UPTIME,
    Snapshot,
    families_at,
    snapshot,
    totals_at,
)
from exporters.queries import QUERIES

RULES = Path(__file__).resolve().parents[3] / "alerts" / "bgdb.rules.yml"


def search_rows(*agents: tuple[str, float, Any, float | None]) -> list[dict[str, Any]]:
    """What agent_heartbeat.sql returns (json_rows): the totals, then the agents."""
    worst = max((a[1] for a in agents), default=0.0)
    return [{"agent_id": None, "age": worst, "error_count": None, "uptime": None,
             "expected": len(agents), "labelled": len(agents)},
            *({"agent_id": a, "age": age, "error_count": e, "uptime": up, "expected": None,
               "labelled": None} for a, age, e, up in agents)]


METRICS = next(q for q in QUERIES if q.name == "agent_heartbeat").metrics


def rows_at(snap: Snapshot, now: float, interval: float) -> list[dict[str, Any]]:
    """The totals, then one row per agent (metric -> value; absent: no sample) in the order of
    the age samples (the search's: most overdue first)."""
    agents: dict[str, dict[str, Any]] = {}
    for fam in families_at(snap, now, interval, METRICS):
        for name, labels, value in fam.samples:
            agents.setdefault(dict(labels)["agent_id"], {})[name] = value
    return [totals_at(snap, now, interval),
            *({"agent_id": a, **figures} for a, figures in agents.items())]


def by_agent(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["agent_id"]: r for r in rows[1:]}


def test_ages_grow_from_the_snapshot() -> None:
    snap = snapshot(search_rows(("silent", 170.0, 3, 7200.0), ("ok", 10.0, 0, None)),
                    taken=1000.0, interval=60, ttl=24)
    rows = rows_at(snap, 1000.0, 60)
    assert rows[0] == {"agent_id": None, EXPECTED: 2, LABELLED: 2, MISSED_MAX: 2.0}
    silent = by_agent(rows)["silent"]
    assert (silent[AGE], silent[MISSED], silent[ERRORS], silent[UPTIME]) == (170, 2, 3, 7200)
    # 15 s later, from the same snapshot: every age and uptime 15 s more, missed from them.
    later = rows_at(snap, 1015.0, 60)
    agents = by_agent(later)
    assert agents["silent"][AGE] == 185 and agents["silent"][MISSED] == 3
    assert agents["silent"][UPTIME] == 7215 and agents["silent"][ERRORS] == 3
    assert agents["ok"][AGE] == 25 and agents["ok"][MISSED] == 0
    assert UPTIME not in agents["ok"]  # never started: no sample
    assert later[0][MISSED_MAX] == 3
    assert [r["agent_id"] for r in later[1:]] == ["silent", "ok"]  # most overdue first, kept


def test_no_agent_no_growing_total() -> None:
    snap = snapshot(search_rows(), taken=0.0, interval=60, ttl=24)
    assert rows_at(snap, 20.0, 60) == [
        {"agent_id": None, EXPECTED: 0, LABELLED: 0, MISSED_MAX: 0.0}]


def test_valid_for_the_ttl_unless_an_exposed_age_would_cross_the_alert_threshold() -> None:
    healthy = snapshot(search_rows(("a", 59.0, 0, 1.0), ("b", 0.0, 0, 1.0)),
                       taken=100.0, interval=60, ttl=24)
    assert healthy.valid_until == 124
    # 175 s old: 5 s before missed reaches 3 (alerting), the snapshot must be confirmed.
    late = snapshot(search_rows(("a", 175.0, 0, 1.0), ("b", 0.0, 0, 1.0)),
                    taken=100.0, interval=60, ttl=24)
    assert late.valid_until == pytest.approx(105)
    # Already past the threshold: its growth is its real growth, the ttl holds.
    silent = snapshot(search_rows(("a", 4000.0, 0, 1.0), ("b", 30.0, 0, 1.0)),
                      taken=100.0, interval=60, ttl=24)
    assert silent.valid_until == 124
    assert snapshot(search_rows(("a", 1.0, 0, 1.0)), taken=100.0, interval=60,
                    ttl=0).valid_until == 100


def test_an_agent_that_beat_since_the_snapshot_never_reads_as_alerting() -> None:
    # The worst case for a healthy agent: just under one interval old at the snapshot, beat
    # right after it; until the ttl (< half an interval) runs out it reads at most 1 missed.
    snap = snapshot(search_rows(("a", 59.999, 0, None)), taken=0.0, interval=60, ttl=29.999)
    assert snap.valid_until == 29.999
    for now in (0.0, 10.0, 29.99):
        assert by_agent(rows_at(snap, now, 60))["a"][MISSED] <= 1
    # One already 2 missed: served only until just before its count would pass the threshold.
    snap = snapshot(search_rows(("a", 170.0, 0, None)), taken=0.0, interval=60, ttl=24)
    assert by_agent(rows_at(snap, snap.valid_until - 1e-6, 60))["a"][MISSED] == ALERT_MISSED


def test_a_totals_row_is_required() -> None:
    with pytest.raises(ValueError, match="totals"):
        snapshot([{"agent_id": "a", "age": 1.0}], taken=0.0, interval=60, ttl=24)


def test_the_threshold_is_the_alert_rule_s() -> None:
    rule = re.search(r"expr: bgdb_agent_missed_heartbeats > (\d+)", RULES.read_text())
    assert rule is not None and int(rule.group(1)) == ALERT_MISSED


def test_families_are_what_the_generic_path_makes_of_the_same_rows() -> None:
    snap = snapshot(search_rows(("b", 130.0, 1, 50.0), ("a", 5.0, None, None)),
                    taken=0.0, interval=60, ttl=24)
    spec = next(q for q in QUERIES if q.name == "agent_heartbeat")
    rows = [{"agent_id": a, AGE: age + 3, MISSED: (age + 3) // 60, ERRORS: e,
             UPTIME: None if up is None else up + 3} for a, _, age, e, up in snap.agents]
    assert families_at(snap, 3.0, 60, METRICS) == families_from_rows(spec, rows)
