"""Per-agent heartbeat health from a short-lived snapshot of the per-agent search.

The search (sql/exporter/agent_heartbeat.sql) is the costliest query of a scrape: a range scan
of the last 1.5 intervals of heartbeats plus planning over every partition, ~3 ms of backend
CPU and 12-20 ms of wall time under load. Its answer moves slowly: an agent's last beat changes
once per heartbeat interval, and what the alerts read (missed = floor(age / interval)) changes
once per interval too. So its rows are kept for ``ttl`` seconds (``agent_heartbeat_cache_seconds``,
by default 0.4 x the interval: 24 s at 60 s) and each scrape in between computes the ages from
the snapshot: age now = age at the query + seconds since it was sent (monotonic clock, so the
exporter's clock need not match the server's), and missed, uptime and the totals from that.
Ages keep growing between refreshes; only a beat that arrived since then is not seen.

Why that cannot raise a false "missed more than twice" (bgdb_agent_missed_heartbeats > 2):
* an agent that beat since the snapshot has a real age < ttl, and a computed one of at most
  its age at the snapshot + ttl. For an agent on time at the snapshot (age < 1 interval) that
  is < 1.5 intervals (exporters/config.py keeps ttl below half an interval): missed reads at
  most 1, never 3;
* an agent already late at the snapshot (missed 2, age up to 3 intervals) could cross 3 on
  the snapshot's figures alone after beating. So a snapshot is refreshed before any age it
  exposes that is below ALERT_MISSED + 1 intervals would reach it (``valid_until``): a count
  above ALERT_MISSED is always one the server has just confirmed, never an extrapolation.
And why it cannot delay a true one: a silent agent's computed age *is* its real age (same last
beat, same elapsed time), and its crossing of the threshold forces a fresh query at that scrape.
What the snapshot does delay, by at most ttl: agents registered (or stopped, or deleted) since
it appear (or leave) at the next refresh, and error_count is the one of the beat it saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from exporters.exposition import Family, Labels
from exporters.queries import MetricSpec

# The alert's threshold (alerts/bgdb.rules.yml, BgdbAgentHeartbeatMissed: missed > 2); the
# unit tests check they agree.
ALERT_MISSED = 2

AGE = "bgdb_agent_last_heartbeat_age_seconds"
MISSED = "bgdb_agent_missed_heartbeats"
ERRORS = "bgdb_agent_error_count"
UPTIME = "bgdb_agent_uptime_seconds"
EXPECTED = "bgdb_agents_expected_heartbeat"
LABELLED = "bgdb_agents_labelled"
MISSED_MAX = "bgdb_agents_missed_heartbeats_max"

# agent_id, its labels (made once per snapshot: render() keys its label text cache by them),
# age at the query, error_count, uptime at the query.
# Optional, not `float | None`: this alias is evaluated at import, and Debian 11's python3 is 3.9.
Agent = tuple[str, Labels, float, Optional[float], Optional[float]]  # noqa: UP007


@dataclass(frozen=True)
class Snapshot:
    """The search's answer as of ``taken`` (monotonic seconds, when the query was sent)."""

    taken: float
    valid_until: float
    expected: int  # agents expected to beat
    labelled: int  # of those, the ones with per-agent rows (max_agents, most overdue first)
    worst: float  # age of the most overdue agent at the query (0 when none)
    agents: tuple[Agent, ...]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def snapshot(rows: Sequence[Mapping[str, Any]], taken: float, interval: float,
             ttl: float) -> Snapshot:
    """A snapshot of the search's rows (json_rows: a totals row first, then one per agent)."""
    if not rows or rows[0].get("agent_id") is not None:
        raise ValueError(f"agent_heartbeat: expected a totals row first, got {str(rows)[:200]}")
    totals = rows[0]
    agents = tuple((str(r["agent_id"]), (("agent_id", str(r["agent_id"])),), float(r["age"]),
                    _float(r.get("error_count")), _float(r.get("uptime"))) for r in rows[1:])
    worst = float(totals["age"] or 0.0)
    # The earliest moment an exposed figure at or below the alert's threshold would pass it
    # from the snapshot alone (the labelled agents, most overdue first, and the worst age).
    limit = (ALERT_MISSED + 1) * interval
    crossing = min((limit - age for age in (worst, *(a[2] for a in agents)) if age < limit),
                   default=ttl)
    return Snapshot(taken=taken, valid_until=taken + min(ttl, crossing),
                    expected=int(totals["expected"] or 0), labelled=int(totals["labelled"] or 0),
                    worst=worst, agents=agents)


def totals_at(snap: Snapshot, now: float, interval: float) -> dict[str, Any]:
    """agent_summary's row as of ``now`` (monotonic)."""
    worst = snap.worst + max(0.0, now - snap.taken) if snap.expected else 0.0
    return {"agent_id": None, EXPECTED: snap.expected, LABELLED: snap.labelled,
            MISSED_MAX: float(math.floor(worst / interval))}


def families_at(snap: Snapshot, now: float, interval: float,
                metrics: Sequence[MetricSpec]) -> list[Family]:
    """The per-agent families (``metrics``: agent_heartbeat's, in its order) as of ``now``:
    what families_from_rows would make of per-agent rows, without making them (800 samples a
    scrape at the default max_agents: the generic path's dicts cost more than the figures)."""
    fams = {m.name: Family(m.name, m.kind, m.help) for m in metrics}
    add_age, add_missed = fams[AGE].samples.append, fams[MISSED].samples.append
    add_errors, add_uptime = fams[ERRORS].samples.append, fams[UPTIME].samples.append
    elapsed = max(0.0, now - snap.taken)
    floor = math.floor
    for _agent_id, labels, age, errors, uptime in snap.agents:
        age += elapsed
        add_age((AGE, labels, age))
        add_missed((MISSED, labels, float(floor(age / interval))))
        if errors is not None:
            add_errors((ERRORS, labels, errors))
        if uptime is not None:
            add_uptime((UPTIME, labels, uptime + elapsed))
    return list(fams.values())
