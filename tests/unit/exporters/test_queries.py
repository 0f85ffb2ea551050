"""The declarative query table and the rows -> metric families step, with plain rows."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.metrics_core import Metric

from exporters import heartbeat
from exporters.collector import (
    derived_rows,
    families_from_rows,
    json_rows,
    load_sql,
    metric_value,
)
from exporters.config import DEFAULT_SQL_DIR
from exporters.exposition import to_metric
from exporters.queries import QUERIES, STATEMENTS_QUERY, QuerySpec, check_table, counter, gauge


def test_table_is_consistent() -> None:
    check_table()


@pytest.mark.parametrize("spec", [q for q in QUERIES if q.target == "postgres"],
                         ids=lambda q: q.name)
def test_sql_file_columns_are_the_metric_and_label_names(spec: QuerySpec) -> None:
    # query-exporter style: every metric and label of the table is a column alias in the file;
    # the heartbeat search's metrics are computed from its rows by exporters/heartbeat.py.
    text = (DEFAULT_SQL_DIR / spec.sql).read_text()
    aliases = set(re.findall(r"\bAS\s+(\w+)", text, flags=re.IGNORECASE))
    if spec.sql == "agent_heartbeat.sql":
        aliases = {v for k, v in vars(heartbeat).items() if k.isupper() and isinstance(v, str)}
    for m in spec.metrics:
        assert m.name in aliases, f"{spec.sql}: no column {m.name}"
    # Labels are plain columns or aliases; the integration tests check the real result columns.
    for label, column in spec.label_columns():
        assert label == column
        assert re.search(rf"\b{column}\b", text), f"{spec.sql}: no column {column}"


def test_every_sql_file_is_used() -> None:
    used = {q.sql for q in (*QUERIES, STATEMENTS_QUERY) if q.target == "postgres"}
    assert {p.name for p in Path(DEFAULT_SQL_DIR).glob("*.sql")} == used


def test_load_sql_reads_postgres_files_and_keeps_show_commands() -> None:
    sql = load_sql(DEFAULT_SQL_DIR, QUERIES)
    assert "pg_stat_activity" in sql["connections"]
    assert sql["pgbouncer_pools"] == "SHOW POOLS"


def metrics(spec: QuerySpec, rows: list[dict[str, Any]]) -> list[Metric]:
    """families_from_rows as client_python's objects (what collect() yields)."""
    return [to_metric(f) for f in families_from_rows(spec, rows)]


def test_families_from_rows_with_labels_counters_and_nulls() -> None:
    spec = QuerySpec("t", "postgres", "t.sql", (
        gauge("bgdb_t_size_bytes", "size"),
        counter("bgdb_t_reads_total", "reads"),
    ), labels=("schema", "table"))
    rows: list[dict[str, Any]] = [
        {"schema": "public", "table": "a", "bgdb_t_size_bytes": Decimal("10.5"),
         "bgdb_t_reads_total": 3},
        {"schema": "public", "table": "b", "bgdb_t_size_bytes": None, "bgdb_t_reads_total": 7},
    ]
    size, reads = metrics(spec, rows)
    assert size.type == "gauge" and reads.type == "counter"
    assert reads.name == "bgdb_t_reads"  # client_python's counter family name
    assert [(s.labels, s.value) for s in size.samples] == [
        ({"schema": "public", "table": "a"}, 10.5)]  # NULL: no sample
    assert [(s.name, s.labels["table"], s.value) for s in reads.samples] == [
        ("bgdb_t_reads_total", "a", 3.0), ("bgdb_t_reads_total", "b", 7.0)]


def test_pgbouncer_columns_scale_rename_and_skip() -> None:
    pools = next(q for q in QUERIES if q.name == "pgbouncer_pools")
    rows = [
        {"database": "agents", "user": "app", "cl_active": 4, "cl_waiting": 2, "sv_active": 3,
         "sv_idle": 1, "sv_used": 0, "sv_tested": 1, "sv_login": 1, "maxwait": 1,
         "maxwait_us": 250000, "pool_mode": "transaction"},
        {"database": "pgbouncer", "user": "pgbouncer", "cl_active": 1, "cl_waiting": 0,
         "sv_active": 0, "sv_idle": 0, "sv_used": 0, "sv_tested": 0, "sv_login": 0,
         "maxwait": 0, "maxwait_us": 0, "pool_mode": "statement"},
    ]
    fams = {f.name: f for f in metrics(pools, rows)}
    wait = fams["bgdb_pgbouncer_pool_max_wait_seconds"].samples
    assert [(s.labels, s.value) for s in wait] == [({"database": "agents", "user": "app"}, 1.25)]
    assert fams["bgdb_pgbouncer_pool_server_other"].samples[0].value == 2
    databases = next(q for q in QUERIES if q.name == "pgbouncer_databases")
    fams = {f.name: f for f in metrics(databases, [
        {"name": "agents", "pool_size": 20, "reserve_pool": 0, "current_connections": 5,
         "max_connections": 0, "paused": 0, "disabled": 0}])}
    assert fams["bgdb_pgbouncer_database_pool_size"].samples[0].labels == {"database": "agents"}


def test_metric_value_optional_extra_columns() -> None:
    m = gauge("x", "x", ("maxwait", 1.0), ("maxwait_us", 1e-6))
    assert metric_value(m, {"maxwait": 2}) == 2  # older PgBouncer: no maxwait_us
    assert metric_value(m, {"maxwait_us": 5}) is None
    assert metric_value(gauge("y", "y"), {"y": True}) == 1.0
    assert metric_value(gauge("y", "y"), {"y": "n/a"}) is None


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError):
        counter("bgdb_not_a_counter", "x")
    dup = QuerySpec("a", "postgres", "a.sql", (gauge("bgdb_x", "x"),))
    with pytest.raises(ValueError, match="twice"):
        check_table((dup, QuerySpec("b", "postgres", "b.sql", (gauge("bgdb_x", "x"),))))
    with pytest.raises(ValueError, match="twice"):
        check_table((dup, dup))
    orphan = QuerySpec("c", "postgres", "a.sql", (gauge("bgdb_y", "y"),), rows_from="zzz")
    with pytest.raises(ValueError, match="rows_from"):
        check_table((dup, orphan))


def test_agent_summary_rides_on_agent_heartbeat_rows() -> None:
    summary = next(q for q in QUERIES if q.name == "agent_summary")
    assert summary.rows_from == "agent_heartbeat"
    rows = [
        {"agent_id": "a1", "bgdb_agents_expected_heartbeat": 5, "bgdb_agents_labelled": 2,
         "bgdb_agents_missed_heartbeats_max": 8},
        {"agent_id": "a2", "bgdb_agents_expected_heartbeat": 5, "bgdb_agents_labelled": 2,
         "bgdb_agents_missed_heartbeats_max": 8},
    ]
    fams = {f.name: f for f in metrics(summary, derived_rows(summary, rows))}
    assert [s.value for s in fams["bgdb_agents_expected_heartbeat"].samples] == [5]
    assert [s.value for s in fams["bgdb_agents_missed_heartbeats_max"].samples] == [8]
    # No agent expected to beat: the totals are 0, not missing.
    fams = {f.name: f for f in metrics(summary, derived_rows(summary, []))}
    assert [s.value for s in fams["bgdb_agents_labelled"].samples] == [0]


def test_only_the_slow_size_queries_are_cached() -> None:
    cached = {q.name for q in QUERIES if q.min_interval_seconds > 0}
    assert cached == {"table_sizes", "database_sizes"}


def test_json_rows_queries_return_one_json_array() -> None:
    # The many-row queries come back as one JSON value (cheap for the pure-Python client).
    json_specs = {q.name for q in (*QUERIES, STATEMENTS_QUERY) if q.json_rows}
    assert json_specs == {"agent_heartbeat", "statements"}
    for q in (*QUERIES, STATEMENTS_QUERY):
        if q.json_rows:
            assert "json_agg" in (DEFAULT_SQL_DIR / q.sql).read_text()
    rows = [{"agent_id": "a1", "bgdb_agent_missed_heartbeats": 3.0}]
    assert json_rows("q", [{"rows": rows}]) == rows
    assert json_rows("q", [{"rows": []}]) == []
    # The "columns" form: names once, one array per row.
    assert json_rows("q", [{"rows": {"columns": ["agent_id", "bgdb_agent_missed_heartbeats"],
                                     "rows": [["a1", 3.0]]}}]) == rows
    assert json_rows("q", [{"rows": {"columns": ["a"], "rows": None}}]) == []
    bads: list[list[dict[str, Any]]] = [
        [], [{"rows": None}], [{"rows": [1, 2]}], [{"rows": []}, {"rows": []}],
        [{"rows": {"columns": ["a", "b"], "rows": [[1]]}}], [{"rows": {"columns": ["a"]}}],
        [{"rows": {"columns": ["a"], "rows": [{"a": 1}]}}]]
    for bad in bads:
        with pytest.raises(psycopg.DataError, match="q: expected one row"):
            json_rows("q", bad)
