"""The pg_stat_statements delta histogram, fed with plain readings."""

from __future__ import annotations

import math

import pytest

from exporters.latency import (
    DEFAULT_BUCKETS,
    LatencyHistogram,
    Observation,
    StatementCounters,
    deltas,
    quantile,
)


def entry(qid: int, calls: int, total_ms: float) -> StatementCounters:
    return StatementCounters((10, 5, qid, True), calls, total_ms)


def buckets(h: LatencyHistogram) -> dict[str, float]:
    return dict(h.cumulative())


def test_first_reading_is_only_a_baseline() -> None:
    h = LatencyHistogram()
    assert h.update([entry(1, 1000, 5000.0)]) == 0
    assert h.count == 0 and h.sum_seconds == 0
    assert h.has_baseline


def test_delta_mean_is_observed_once_per_call() -> None:
    h = LatencyHistogram()
    h.update([entry(1, 100, 100.0), entry(2, 10, 10.0)])
    # q1: 50 more calls taking 6000 ms -> mean 120 ms, counted 50 times in (0.1, 0.15].
    # q2: 200 more calls taking 400 ms -> mean 2 ms, counted 200 times in (0.001, 0.0025].
    observed = h.update([entry(1, 150, 6100.0), entry(2, 210, 410.0)])
    assert observed == 250
    b = buckets(h)
    assert b["0.001"] == 0
    assert b["0.0025"] == 200
    assert b["0.1"] == 200
    assert b["0.15"] == 250
    assert b["+Inf"] == 250 == h.count
    assert h.sum_seconds == pytest.approx(6.0 + 0.4)


def test_mean_on_a_bound_falls_in_that_bucket() -> None:
    # Prometheus buckets are "less than or equal": exactly 100 ms belongs to le="0.1".
    h = LatencyHistogram()
    h.update([entry(1, 0, 0.0)])
    h.update([entry(1, 4, 400.0)])
    b = buckets(h)
    assert b["0.075"] == 0 and b["0.1"] == 4


def test_unchanged_entries_add_nothing_and_counts_only_grow() -> None:
    h = LatencyHistogram()
    h.update([entry(1, 10, 10.0)])
    h.update([entry(1, 20, 30.0)])
    first = h.cumulative()
    h.update([entry(1, 20, 30.0)])
    assert h.cumulative() == first
    h.update([entry(1, 25, 35.0)])
    assert all(after >= before for (_, before), (_, after) in zip(first, h.cumulative(),
                                                                   strict=True))


def test_new_and_readded_entries_count_from_zero() -> None:
    h = LatencyHistogram()
    h.update([entry(1, 1000, 1000.0)])
    # Entry 1 was evicted and re-added (counters went back), entry 2 is new.
    h.update([entry(1, 3, 3000.0), entry(2, 2, 10.0)])
    b = buckets(h)
    assert b["0.005"] == 2  # entry 2: 5 ms
    assert b["1.0"] - b["0.5"] == 3  # entry 1: 1 s mean, 3 calls
    assert h.count == 5


def test_stats_reset_counts_every_entry_from_zero() -> None:
    h = LatencyHistogram()
    h.update([entry(1, 1000, 1000.0)], reset_marker="t0")
    h.update([entry(1, 1500, 1500.0)], reset_marker="t1")  # reset between, then 1500 calls
    assert h.count == 1500


def test_time_going_back_with_more_calls_is_treated_as_readded() -> None:
    # More calls but less total time than before: not a delta, the entry restarted.
    obs = deltas({(10, 5, 1, True): (10, 500.0)}, [entry(1, 12, 24.0)])
    assert obs == [Observation(0.002, 12, 0.024)]


def test_vanished_entries_are_forgotten() -> None:
    h = LatencyHistogram()
    h.update([entry(1, 10, 10.0), entry(2, 10, 10.0)])
    h.update([entry(2, 10, 10.0)])
    h.update([entry(1, 4, 4.0), entry(2, 10, 10.0)])  # entry 1 back: counted from zero
    assert h.count == 4


def test_quantile_matches_histogram_quantile() -> None:
    # 10 <= 50 ms, 20 in (50, 100], 70 in (100, 150]: p95 = 0.1 + 0.05 * 65 / 70.
    cum = [("0.05", 10.0), ("0.1", 30.0), ("0.15", 100.0), ("+Inf", 100.0)]
    assert quantile(0.95, cum) == pytest.approx(0.1 + 0.05 * 65 / 70)
    assert quantile(0.5, cum) == pytest.approx(0.1 + 0.05 * 20 / 70)
    assert math.isnan(quantile(0.95, [("0.1", 0.0), ("+Inf", 0.0)]))
    # A rank in the +Inf bucket: the highest finite bound, as Prometheus does.
    assert quantile(0.99, [("0.1", 10.0), ("+Inf", 100.0)]) == 0.1


def test_p95_of_a_workload_through_the_histogram() -> None:
    # 95 fast statements at 2 ms and 5 slow at 400 ms per interval: p95 sits at the edge of
    # the fast bucket; with 10 slow ones it moves into the slow bucket, over 100 ms.
    h = LatencyHistogram()
    h.update([entry(1, 0, 0.0), entry(2, 0, 0.0)])
    h.update([entry(1, 95, 190.0), entry(2, 5, 2000.0)])
    assert quantile(0.95, h.cumulative()) == pytest.approx(0.0025)
    h.update([entry(1, 180, 360.0), entry(2, 20, 6000.0)])
    assert quantile(0.95, h.cumulative()) > 0.1


def test_default_buckets_have_the_kpi_bound() -> None:
    assert 0.1 in DEFAULT_BUCKETS
    assert list(DEFAULT_BUCKETS) == sorted(DEFAULT_BUCKETS)


@pytest.mark.parametrize("bad", [(), (0.1, 0.05), (0.0, 1.0), (0.1, 0.1)])
def test_bad_buckets_are_refused(bad: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        LatencyHistogram(bad)
