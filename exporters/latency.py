"""Query latency histogram from pg_stat_statements deltas between scrapes (pure, no I/O).

What it does
    pg_stat_statements keeps, per statement entry (userid, dbid, queryid, toplevel), the number
    of calls and their total execution time. At each scrape the exporter reads those two
    counters for every entry and compares them with the previous scrape. For an entry that ran
    ``dc`` more calls taking ``dt`` more milliseconds, the mean latency of those calls is
    ``dt / dc``; that mean is observed ``dc`` times into a cumulative histogram (the bucket whose
    upper bound is the first >= the mean gets ``+dc``; ``_sum`` gets ``dt``, ``_count`` gets
    ``dc``). Prometheus then gives the p95 over any window with
    ``histogram_quantile(0.95, sum by (le) (rate(bgdb_statement_latency_seconds_bucket[5m])))``.

What it does not cover (read the p95 with this in mind)
    * It is a distribution of per-statement *means* per scrape interval, weighted by calls, not of
      single calls: within one statement entry and one interval every call counts as the mean.
      A statement that takes 1 ms 99 times and 500 ms once shows as 100 calls at ~6 ms. With
      many distinct statements the p95 tracks the slow statement kinds well; tail latency inside
      one statement kind is hidden. pg_stat_statements has no per-call distribution.
    * Only execution time inside the server: not planning (unless pg_stat_statements.track_planning
      is on, and even then not here), not network, client or PgBouncer queueing (PgBouncer's own
      mean query time is exported separately from SHOW STATS), not lock waits before a statement
      starts in another session's transaction.
    * Only statements that finished: a statement still running at the scrape is counted when it
      completes. Statements that failed or were cancelled are not counted by pg_stat_statements.
    * Only top-level statements (nested statements inside functions would be counted twice).
    * Entries evicted between two scrapes (pg_stat_statements.max reached) lose the calls they
      made after the previous scrape; an evicted-then-readded entry, and every entry after
      pg_stat_statements_reset(), is counted from zero, i.e. from the reset on.
    * The first scrape after the exporter starts only records a baseline.
    * Resolution is that of the buckets: histogram_quantile interpolates linearly inside the
      bucket holding the quantile, so "p95 > 100 ms" is exact only at bucket bounds (0.1 s is one).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

# Seconds. 0.1 is a bound on purpose: the seed's KPI is p95 < 100 ms.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

StatementKey = tuple[int, int, int, bool]  # userid, dbid, queryid, toplevel


# NamedTuples, not frozen dataclasses: hundreds are made per scrape, and a frozen dataclass's
# __init__ (object.__setattr__ per field) costs several times a tuple's.
class StatementCounters(NamedTuple):
    """One pg_stat_statements entry as read at a scrape."""

    key: StatementKey
    calls: int
    total_exec_time_ms: float


class Observation(NamedTuple):
    mean_seconds: float
    calls: int
    seconds: float


def deltas(
    previous: dict[StatementKey, tuple[int, float]] | None,
    current: Iterable[StatementCounters],
) -> list[Observation]:
    """Observations made between two readings of pg_stat_statements.

    ``previous`` None means there is no baseline yet (first scrape, or the statistics were
    reset): nothing is observed. An entry absent from ``previous``, or whose counters went
    backwards (evicted and re-added), is counted from zero.
    """
    if previous is None:
        return []
    out: list[Observation] = []
    for entry in current:
        calls, total_ms = entry.calls, entry.total_exec_time_ms
        before = previous.get(entry.key)
        if before is not None and calls >= before[0] and total_ms >= before[1]:
            calls -= before[0]
            total_ms -= before[1]
        if calls <= 0:
            continue
        seconds = max(total_ms, 0.0) / 1000.0
        out.append(Observation(seconds / calls, calls, seconds))
    return out


class LatencyHistogram:
    """Cumulative histogram of statement mean latencies, fed with one reading per scrape."""

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or bounds != sorted(set(bounds)) or bounds[0] <= 0:
            raise ValueError(f"buckets must be increasing positive numbers: {buckets!r}")
        self.bounds: tuple[float, ...] = tuple(bounds)
        self._counts = [0] * (len(bounds) + 1)  # last one is +Inf
        self.sum_seconds = 0.0
        self._previous: dict[StatementKey, tuple[int, float]] | None = None
        self._reset_marker: object = None

    @property
    def has_baseline(self) -> bool:
        return self._previous is not None

    def update(self, entries: Iterable[StatementCounters], reset_marker: object = None) -> int:
        """Take one reading; returns the number of calls observed.

        ``reset_marker`` is pg_stat_statements_info.stats_reset: when it changes, every entry was
        reset since the previous reading, so each is counted from zero.
        """
        current = list(entries)
        previous = self._previous
        if previous is not None and reset_marker != self._reset_marker:
            previous = {}
        observed = 0
        for obs in deltas(previous, current):
            self._counts[bisect.bisect_left(self.bounds, obs.mean_seconds)] += obs.calls
            self.sum_seconds += obs.seconds
            observed += obs.calls
        self._previous = {e.key: (e.calls, e.total_exec_time_ms) for e in current}
        self._reset_marker = reset_marker
        return observed

    @property
    def count(self) -> int:
        return sum(self._counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """Buckets as (le, cumulative count) pairs ending with +Inf, for HistogramMetricFamily."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self._counts):  # one count per bound
            running += n
            out.append(("+Inf" if math.isinf(bound) else _le(bound), float(running)))
        return out


def _le(bound: float) -> str:
    # The same text client_python writes for its own histograms' bounds (floatToGoString).
    return repr(float(bound))


def quantile(q: float, cumulative: Sequence[tuple[str, float]]) -> float:
    """Prometheus' histogram_quantile on one set of cumulative buckets (for tests and bench).

    Linear interpolation inside the bucket that holds the rank; the lowest bucket starts at 0;
    a rank in the +Inf bucket returns the highest finite bound.
    """
    if not cumulative or cumulative[-1][0] != "+Inf":
        raise ValueError("buckets must end with +Inf")
    total = cumulative[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in cumulative:
        upper = math.inf if le == "+Inf" else float(le)
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower
