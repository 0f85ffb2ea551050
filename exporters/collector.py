"""The Prometheus collector: runs the query table at each scrape and turns rows into metrics.

One scrape at a time (a lock). No query starts once ``scrape_timeout_seconds`` (default 5 s) have
passed in the scrape, and a started one ends within statement_timeout + 1 s, so with the
defaults a scrape takes at most 5 + 2 + 1 s, under Prometheus' default 10 s scrape_timeout:
* the ``server`` query goes first and is the availability probe: ``bgdb_up`` is 1 when the
  server answered; when it cannot connect, or stops answering mid-scrape, ``bgdb_up`` is 0, the
  remaining queries are skipped, and the endpoint still answers with the exporter's own metrics;
* every other query runs as its own statement; one that fails (timeout, missing table, lock
  timeout) only increments ``bgdb_exporter_query_errors_total{query=...}`` and its metrics are
  missing from this scrape;
* the connection is opened lazily and replaced by itself after it breaks;
* a query with ``min_interval_seconds`` (the sizes: they change slowly and cost the most) runs
  at most that often; the scrapes in between serve the rows of its last successful run;
* a query with ``rows_from`` runs nothing: its samples come from that query's rows in the same
  scrape (agent_summary's totals ride along agent_heartbeat's search).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporters import backup_status
from exporters.config import ExporterConfig
from exporters.connection import Database, DatabaseHung
from exporters.latency import LatencyHistogram, StatementCounters
from exporters.queries import QUERIES, STATEMENTS_QUERY, MetricSpec, QuerySpec, check_table

log = logging.getLogger(__name__)

PROBE = "server"
LATENCY_METRIC = "bgdb_statement_latency_seconds"
LATENCY_HELP = (
    "Mean execution time of top-level statements per pg_stat_statements entry between scrapes, "
    "observed once per call (see exporters/latency.py for what it covers); p95 with "
    "histogram_quantile(0.95, sum by (le) (rate(..._bucket[5m])))."
)
_PARAM = re.compile(r"%\(\w+\)s")

Row = Mapping[str, Any]


def load_sql(sql_dir: str | Path, specs: Iterable[QuerySpec]) -> dict[str, str]:
    """Text of every postgres query's file (read once at start: a missing file fails early)."""
    out: dict[str, str] = {}
    for spec in specs:
        if spec.target == "postgres":
            out[spec.name] = (Path(sql_dir) / spec.sql).read_text(encoding="utf-8")
        else:
            out[spec.name] = spec.sql
    return out


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float | Decimal):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def metric_value(metric: MetricSpec, row: Row) -> float | None:
    """The sample value of ``metric`` in ``row``; None (no sample) when its first column is
    missing or NULL. Further columns are optional (absent in older PgBouncer versions)."""
    total = 0.0
    for i, (column, scale) in enumerate(metric.columns()):
        value = _number(row.get(column))
        if value is None:
            if i == 0:
                return None
            continue
        total += value * scale
    return total


def families_from_rows(spec: QuerySpec, rows: Iterable[Row]) -> list[Metric]:
    """Metric families of one query's rows (the declarative part, pure)."""
    label_cols = spec.label_columns()
    names = [name for name, _ in label_cols]
    fams: list[tuple[MetricSpec, GaugeMetricFamily | CounterMetricFamily]] = []
    for m in spec.metrics:
        fam: GaugeMetricFamily | CounterMetricFamily
        if m.kind == "counter":
            fam = CounterMetricFamily(m.family_name, m.help, labels=names)
        else:
            fam = GaugeMetricFamily(m.family_name, m.help, labels=names)
        fams.append((m, fam))
    for row in rows:
        if any(str(row.get(col)) == value for col, value in spec.skip):
            continue
        labels = ["" if row.get(col) is None else str(row.get(col)) for _, col in label_cols]
        for m, fam in fams:
            value = metric_value(m, row)
            if value is not None:
                fam.add_metric(labels, value)
    return [fam for _, fam in fams]


def json_rows(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a ``json_rows`` query: its one "rows" column, a JSON array of objects."""
    value = rows[0].get("rows") if len(rows) == 1 else None
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        # A psycopg.Error, so that it counts as this query's failure like any other.
        raise psycopg.DataError(f"{name}: expected one row with a JSON array of objects, "
                                f"got {str(rows)[:200]}")
    return value


def derived_rows(spec: QuerySpec, parent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a ``rows_from`` query: the first row of its source query, or 0 for every metric
    when the source returned no row (e.g. no agent expected to beat)."""
    if parent:
        return parent[:1]
    return [{col: 0 for m in spec.metrics for col, _ in m.columns()}]


class BgdbCollector(Collector):
    def __init__(
        self,
        cfg: ExporterConfig,
        queries: tuple[QuerySpec, ...] = QUERIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_table(queries)
        self.cfg = cfg
        self.queries = queries
        self._clock = clock
        self._sql = load_sql(cfg.sql_dir, (*queries, STATEMENTS_QUERY))
        self._params = cfg.sql_params()
        self._pg = Database(cfg.dsn, statement_timeout_seconds=cfg.statement_timeout_seconds)
        self._bouncer = (
            Database(
                cfg.pgbouncer_dsn,
                statement_timeout_seconds=cfg.statement_timeout_seconds,
                name="pgbouncer",
                session_settings=False,
            )
            if cfg.pgbouncer_dsn
            else None
        )
        self._lock = threading.Lock()
        self._histogram = LatencyHistogram()
        targets = {"postgres", "pgbouncer"} if self._bouncer is not None else {"postgres"}
        names = [q.name for q in (*queries, STATEMENTS_QUERY) if q.target in targets]
        self._errors: dict[str, int] = dict.fromkeys(names, 0)
        self._durations: dict[str, float] = {}
        self._skipped = 0
        self._connect_errors: dict[str, int] = {"postgres": 0, "pgbouncer": 0}
        self._scrapes = 0
        self._backup_errors = 0
        # name -> (monotonic time of the run, rows) for queries with min_interval_seconds.
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    # -- prometheus_client interface ------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        # Names only, so that registering does not query the database.
        for spec in self.queries:
            yield from families_from_rows(spec, ())
        yield HistogramMetricFamily(LATENCY_METRIC, LATENCY_HELP, labels=())
        yield from self._self_metrics(up=False, bouncer_up=False, duration=0.0)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            fams = self._scrape()
        yield from fams

    @property
    def last_query_durations(self) -> dict[str, float]:
        """Seconds each query took in its last run (for bench/exporter_scrape.py)."""
        return dict(self._durations)

    def close(self) -> None:
        self._pg.close()
        if self._bouncer is not None:
            self._bouncer.close()

    # -- one scrape -----------------------------------------------------------------------------

    def _scrape(self) -> list[Metric]:
        started = time.monotonic()
        deadline = started + self.cfg.scrape_timeout_seconds
        self._scrapes += 1
        out: list[Metric] = []
        up = self._scrape_target(self._pg, "postgres", deadline, out)
        bouncer_up = False
        if self._bouncer is not None:
            bouncer_up = self._scrape_target(self._bouncer, "pgbouncer", deadline, out)
        out.extend(self._backup_metrics())
        duration = time.monotonic() - started
        out.extend(self._self_metrics(up=up, bouncer_up=bouncer_up, duration=duration))
        return out

    def _run(self, db: Database, spec: QuerySpec) -> list[dict[str, Any]]:
        sql = self._sql[spec.name]
        params = self._params if spec.target == "postgres" and _PARAM.search(sql) else None
        t0 = time.monotonic()
        try:
            rows = db.query(sql, params)
            return json_rows(spec.name, rows) if spec.json_rows else rows
        finally:
            self._durations[spec.name] = time.monotonic() - t0

    def _scrape_target(self, db: Database, target: str, deadline: float, out: list[Metric]) -> bool:
        """Run the target's queries into ``out``; True when the server answered."""
        specs = [q for q in self.queries if q.target == target]
        if target == "postgres":
            # The probe first, the histogram last (its reading is the least urgent).
            specs.sort(key=lambda q: q.name != PROBE)
            specs.append(STATEMENTS_QUERY)
        up = False
        results: dict[str, list[dict[str, Any]]] = {}
        for i, spec in enumerate(specs):
            if spec.rows_from and i > 0:
                parent = results.get(spec.rows_from)
                if parent is None:
                    self._errors[spec.name] += 1
                else:
                    out.extend(families_from_rows(spec, derived_rows(spec, parent)))
                continue
            cached = self._cache.get(spec.name)
            if (cached is not None and spec.min_interval_seconds > 0
                    and time.monotonic() - cached[0] < spec.min_interval_seconds):
                out.extend(families_from_rows(spec, cached[1]))
                continue
            # The probe always runs, so that *_up tells the truth even when the budget is spent.
            if i > 0 and time.monotonic() >= deadline:
                self._skipped += len(specs) - i
                log.warning("scrape budget spent: %d %s queries skipped", len(specs) - i, target)
                break
            try:
                rows = self._run(db, spec)
            except DatabaseHung as exc:
                self._errors[spec.name] += 1
                log.warning("%s: %s", spec.name, exc)
                return False
            except psycopg.Error as exc:
                if not db.connected:
                    # Could not connect, or the connection broke: the server is down for us.
                    if i > 0:
                        self._errors[spec.name] += 1
                    else:
                        self._connect_errors[target] += 1
                    log.warning("%s unreachable (%s): %s", target, spec.name, _one_line(exc))
                    return False
                self._errors[spec.name] += 1
                log.warning("query %s failed: %s", spec.name, _one_line(exc))
                up = True
                continue
            up = True
            results[spec.name] = rows
            if spec.min_interval_seconds > 0:
                self._cache[spec.name] = (time.monotonic(), rows)
            if spec is STATEMENTS_QUERY:
                out.extend(self._latency(rows))
            else:
                out.extend(families_from_rows(spec, rows))
        return up

    def _latency(self, rows: list[dict[str, Any]]) -> list[Metric]:
        entries = [
            StatementCounters(
                (int(r["userid"]), int(r["dbid"]), int(r["queryid"]), bool(r["toplevel"])),
                int(r["calls"]),
                float(r["total_exec_time"]),
            )
            for r in rows
        ]
        reset = rows[0]["stats_reset"] if rows else None
        self._histogram.update(entries, reset_marker=reset)
        fam = HistogramMetricFamily(
            LATENCY_METRIC,
            LATENCY_HELP,
            buckets=self._histogram.cumulative(),
            sum_value=self._histogram.sum_seconds,
        )
        return [fam]

    def _backup_metrics(self) -> list[Metric]:
        path = self.cfg.backup_status_file
        if not path:
            return []
        ok = 1.0
        out: list[Metric] = []
        try:
            figures = backup_status.read(path)
        except (OSError, backup_status.BackupStatusError) as exc:
            self._backup_errors += 1
            ok = 0.0
            log.warning("backup status file: %s", _one_line(exc))
        else:
            for name, help_, value in backup_status.metrics(figures, self._clock()):
                out.append(GaugeMetricFamily(name, help_, value=value))
        out.append(GaugeMetricFamily(
            "bgdb_backup_status_ok", "1 if the backup status file was read and understood.", ok))
        out.append(CounterMetricFamily(
            "bgdb_backup_status_errors",
            "Scrapes where the backup status file was missing or invalid.",
            value=self._backup_errors,
        ))
        return out

    def _self_metrics(self, *, up: bool, bouncer_up: bool, duration: float) -> list[Metric]:
        out: list[Metric] = [
            GaugeMetricFamily("bgdb_up", "1 if PostgreSQL answered this scrape.", float(up)),
        ]
        if self._bouncer is not None:
            out.append(GaugeMetricFamily(
                "bgdb_pgbouncer_up", "1 if PgBouncer's admin console answered.", float(bouncer_up)))
        out.append(GaugeMetricFamily(
            "bgdb_exporter_scrape_duration_seconds",
            "Time this scrape spent collecting (database and files).", duration))
        errors = CounterMetricFamily(
            "bgdb_exporter_query_errors", "Failed runs of each query.", labels=["query"])
        for name, n in sorted(self._errors.items()):
            errors.add_metric([name], n)
        out.append(errors)
        durations = GaugeMetricFamily(
            "bgdb_exporter_query_duration_seconds",
            "Duration of each query's last run.", labels=["query"])
        for name, seconds in sorted(self._durations.items()):
            durations.add_metric([name], seconds)
        out.append(durations)
        out.append(CounterMetricFamily(
            "bgdb_exporter_queries_skipped",
            "Queries not run because the scrape budget (scrape_timeout_seconds) was spent.",
            value=self._skipped))
        out.append(CounterMetricFamily("bgdb_exporter_scrapes", "Scrapes served.",
                                       value=self._scrapes))
        conns = CounterMetricFamily(
            "bgdb_exporter_connections", "Database connections opened (reconnects).",
            labels=["target"])
        conns.add_metric(["postgres"], self._pg.connects)
        if self._bouncer is not None:
            conns.add_metric(["pgbouncer"], self._bouncer.connects)
        out.append(conns)
        conn_errors = CounterMetricFamily(
            "bgdb_exporter_connect_errors",
            "Scrapes where the target could not be reached at all.", labels=["target"])
        conn_errors.add_metric(["postgres"], self._connect_errors["postgres"])
        if self._bouncer is not None:
            conn_errors.add_metric(["pgbouncer"], self._connect_errors["pgbouncer"])
        out.append(conn_errors)
        out.append(GaugeMetricFamily(
            "bgdb_exporter_heartbeat_interval_seconds",
            "Expected agent heartbeat interval used for bgdb_agent_missed_heartbeats.",
            self.cfg.heartbeat_interval_seconds))
        out.append(GaugeMetricFamily(
            "bgdb_exporter_max_agents", "Cap on agents with per-agent series.",
            self.cfg.max_agents))
        return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
