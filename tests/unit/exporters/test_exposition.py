"""The text exposition writer, read back with client_python's own parser (pure)."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from exporters.collector import batch_sql, families_from_rows, split_batch
from exporters.exposition import (
    LABEL_CACHE_SIZE,
    Family,
    Labels,
    format_value,
    render,
    to_metric,
)
from exporters.queries import QUERIES

AGENTS = next(q for q in QUERIES if q.name == "agent_heartbeat")


def sample_set(families: Any) -> set[tuple[str, frozenset[tuple[str, str]], str]]:
    # Values as text of a float, so that NaN compares equal to NaN.
    return {(s.name, frozenset(s.labels.items()), repr(float(s.value)))
            for f in families for s in f.samples}


def families() -> list[Family]:
    rows: list[dict[str, Any]] = [
        {"agent_id": f"agent-{i:05d}", "bgdb_agent_last_heartbeat_age_seconds": 12.5 * i,
         "bgdb_agent_missed_heartbeats": float(i // 5), "bgdb_agent_error_count": i % 3 or None,
         "bgdb_agent_uptime_seconds": 86400 * i + 0.125}
        for i in range(200)
    ]
    rows.append({"agent_id": 'odd "name"\\ with\nnewline', "bgdb_agent_last_heartbeat_age_seconds":
                 1e21, "bgdb_agent_missed_heartbeats": math.inf,
                 "bgdb_agent_error_count": -math.inf, "bgdb_agent_uptime_seconds": math.nan})
    out = families_from_rows(AGENTS, rows)
    counter = Family("bgdb_t_reads_total", "counter", "Reads,\nwith a \\ in the help.")
    counter.add(7.0, (("schema", "public"), ("table", "t")))
    hist = Family("bgdb_t_latency_seconds", "histogram", "Latency.")
    for le, n in (("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)):
        hist.samples.append(("bgdb_t_latency_seconds_bucket", (("le", le),), n))
    hist.samples += [("bgdb_t_latency_seconds_count", (), 4.0),
                     ("bgdb_t_latency_seconds_sum", (), 2.5)]
    up = Family("bgdb_up", "gauge", "Up.")
    up.add(0.0)
    return [*out, counter, hist, up, Family("bgdb_empty", "gauge", "No samples.")]


def test_render_reads_back_as_what_was_meant() -> None:
    fams = families()
    body = render(fams).decode("utf-8")
    parsed = list(text_string_to_metric_families(body))
    meant = [to_metric(f) for f in fams]
    assert sample_set(parsed) == sample_set(meant)
    assert len([s for f in parsed for s in f.samples]) == 201 * 4 - 67 + 1 + 5 + 1
    # Names, types and help as client_python has them (counters without _total).
    assert [(f.name, f.type, f.documentation) for f in parsed] == [
        (m.name, m.type, m.documentation) for m in meant]
    assert "bgdb_up 0.0\n" in body
    assert 'agent_id="odd \\"name\\"\\\\ with\\nnewline"' in body


def test_render_matches_generate_latest_line_for_line() -> None:
    # The same families through client_python's writer: the same lines, up to how a float is
    # spelled (floatToGoString writes 1.234567e+06 where repr writes 1234567.0).
    fams = families()

    class Source:
        def collect(self) -> list[Metric]:
            return [to_metric(f) for f in fams]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Source())
    theirs = generate_latest(registry).decode("utf-8").splitlines()
    ours = render(fams).decode("utf-8").splitlines()
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        if a.startswith("#"):
            assert a == b
        else:
            head_a, _, value_a = a.rpartition(" ")
            head_b, _, value_b = b.rpartition(" ")
            # Labels in the order the query gives them; client_python sorts them.
            assert sorted(head_a.split(",")) == sorted(head_b.split(","))
            assert repr(float(value_a)) == repr(float(value_b))


def test_render_with_a_label_cache_kept_between_calls() -> None:
    fam = Family("bgdb_t", "gauge", "t")
    fam.add(1.0, (("agent_id", 'a"1'),))
    fam.add(2.0, (("agent_id", "b"),))
    cache: dict[Labels, str] = {}
    first = render([fam], cache)
    assert first == render([fam]) and len(cache) == 2
    cache[(("agent_id", "b"),)] = '{agent_id="cached"}'  # served from the cache, not remade
    assert b'bgdb_t{agent_id="cached"} 2.0' in render([fam], cache)
    big: dict[Labels, str] = {(("n", str(i)),): "" for i in range(LABEL_CACHE_SIZE + 1)}
    assert render([fam], big) == first and len(big) == 2  # outgrown: started over


def test_format_value() -> None:
    assert [format_value(v) for v in (1.0, 0.1, math.inf, -math.inf, math.nan, 3)] == [
        "1.0", "0.1", "+Inf", "-Inf", "NaN", "3.0"]


def test_batch_sql_wraps_each_query_between_clock_readings() -> None:
    sql = batch_sql([("a", "SELECT 1 AS x -- no parameter, a literal %"),
                     ("b", "SELECT %(n)s AS y, 'x%%' AS z")])
    assert sql.startswith("SELECT json_build_array(date_part('epoch', clock_timestamp())")
    assert sql.count("clock_timestamp()") == 3
    assert "literal %%\n)" in sql  # doubled for the batch, which has parameters
    assert "'x%%' AS z\n)" in sql  # already written for parameters: as is
    with pytest.raises(ValueError, match="too many"):
        batch_sql([(str(i), "SELECT 1") for i in range(50)])


def test_split_batch() -> None:
    rows, seconds = split_batch(["a", "b"], [100.0, [{"x": 1}], 100.25, [], 100.5])
    assert rows == {"a": [{"x": 1}], "b": []}
    assert seconds == {"a": 0.25, "b": 0.25}
    for bad in (None, [100.0, [], 100.1], [100.0, {"x": 1}, 100.1, [], 100.2]):
        with pytest.raises(psycopg.DataError, match="batch"):
            split_batch(["a", "b"], bad)
