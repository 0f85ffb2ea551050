"""The Prometheus collector: runs the query table at each scrape and turns rows into metrics.

One scrape at a time (a lock). No query starts once ``scrape_timeout_seconds`` (default 5 s) have
passed in the scrape, and a started one ends within statement_timeout + 2 s, so with the
defaults a scrape takes at most 5 + 2 + 2 s, under Prometheus' default 10 s scrape_timeout:
* the PostgreSQL queries that run at every scrape go to the server as one statement, the
  *batch* (``batch_sql``): one round trip, one transaction, one result of JSON that one
  json.loads reads (Debian's python3-psycopg is pure Python and pays per statement and per value
  fetched, the server per statement too). The batch holds the ``server`` probe: ``bgdb_up`` is 1
  when it answered; when PostgreSQL cannot be reached or stops answering, ``bgdb_up`` is 0, the
  rest is skipped, and the endpoint still answers with the exporter's own metrics;
* the costliest query (``parallel`` in exporters/queries.py: the per-agent heartbeat search,
  and agents_by_state, the other reader of the often-vacuumed agents table, whose plan
  invalidations then spare the batch's, and the pg_stat_statements read) runs at the same time
  on a second connection (application_name bgdb-exporter-parallel), so the server's work is
  spread over two cores; that worker thread then makes those queries' metric families and
  runs PgBouncer's statements, while the scrape's own thread mostly waits on the batch (the
  interpreter is free then). A query the server
  answers there with an error (a lock or statement timeout) is counted like any other; one whose
  connection breaks or cannot be had runs on the main connection after the batch, in the same
  scrape (a second connection that cannot be had is left alone for ``UNBATCHED_SCRAPES``);
* when the batch fails otherwise (a query's error, a lock or statement timeout), the same scrape
  runs its queries one by one, the probe first, each its own statement with its own
  statement_timeout: one that fails only increments
  ``bgdb_exporter_query_errors_total{query=...}`` and its metrics are missing from this scrape.
  A query that failed alone runs alone (outside the batch) until it succeeds again; when the
  batch failed but none of its queries did alone, the next ``UNBATCHED_SCRAPES`` scrapes run
  one by one before the batch is tried again;
* the connection is opened lazily and replaced by itself after it breaks;
* a query with ``min_interval_seconds`` (the sizes: they change slowly and cost the most) runs
  at most that often, on its own; the scrapes in between serve the rows of its last successful
  run;
* a query with ``rows_from`` runs nothing: its samples come from that query's rows in the same
  scrape (agent_summary's totals ride along agent_heartbeat's search);
* the per-agent heartbeat search's rows are reused for ``agent_heartbeat_cache_seconds``
  (default 0.4 x the heartbeat interval), their ages advanced at each scrape: see
  exporters/heartbeat.py for why that cannot raise a false missed-heartbeat alert nor delay a
  true one.

``collect()`` gives client_python's objects (registry API, tests); the HTTP endpoint renders the
same families with exporters/exposition.py (``exposition()``), which is several times cheaper.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client.metrics_core import Metric

try:
    from prometheus_client.registry import Collector
except ImportError:  # prometheus_client < 0.14 (Debian 11: 0.9): the registry needs collect() only
    Collector = object  # type: ignore[misc,assignment]

from exporters import backup_status, heartbeat, patroni
from exporters.config import ExporterConfig
from exporters.connection import APPLICATION_NAME, Database, DatabaseHung
from exporters.exposition import Family, Labels, render, to_metric
from exporters.latency import LatencyHistogram, StatementCounters
from exporters.queries import QUERIES, STATEMENTS_QUERY, MetricSpec, QuerySpec, check_table

log = logging.getLogger(__name__)

PROBE = "server"
HEARTBEAT = "agent_heartbeat"  # its rows go through exporters/heartbeat.py
LATENCY_METRIC = "bgdb_statement_latency_seconds"
LATENCY_HELP = (
    "Mean execution time of top-level statements per pg_stat_statements entry between scrapes, "
    "observed once per call (see exporters/latency.py for what it covers); p95 with "
    "histogram_quantile(0.95, sum by (le) (rate(..._bucket[5m])))."
)
# After a batch failure that no query is to blame for (e.g. the whole batch outlived
# statement_timeout), this many scrapes run their queries one by one.
UNBATCHED_SCRAPES = 10
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


def batch_sql(parts: Iterable[tuple[str, str]]) -> str:
    """One statement running every (name, sql) part, in order; its one column is a JSON array
    ``[t0, rows1, t1, rows2, t2, ...]``: each part's rows as an array of objects (json_agg, the
    column aliases as keys) between server clock readings (clock_timestamp(), Unix seconds),
    which give each part's duration. Arguments are evaluated in order and each part, an
    uncorrelated subquery, runs where its value is first needed."""
    clock = "date_part('epoch', clock_timestamp())"
    out = [f"SELECT json_build_array({clock}"]
    n = 0
    for _name, sql in parts:
        # Files without parameters were written for a plain execute: their % is literal.
        body = sql if _PARAM.search(sql) else sql.replace("%", "%%")
        out.append(f",\n(SELECT coalesce(json_agg(q), '[]') FROM (\n{body.strip()}\n) AS q)"
                   f", {clock}")
        n += 1
    if 1 + 2 * n > 100:  # FUNC_MAX_ARGS
        raise ValueError(f"{n} queries are too many for one batch (at most 49)")
    out.append(") AS batch")
    return "".join(out)


def split_batch(names: list[str], value: Any) -> tuple[dict[str, list[dict[str, Any]]],
                                                      dict[str, float]]:
    """(rows, seconds) of each part from the batch's JSON value (see batch_sql)."""
    if not isinstance(value, list) or len(value) != 1 + 2 * len(names):
        raise psycopg.DataError(f"batch: unexpected result {str(value)[:200]}")
    rows: dict[str, list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    for i, name in enumerate(names):
        part = value[1 + 2 * i]
        if not isinstance(part, list):
            raise psycopg.DataError(f"batch: {name}: expected an array, got {str(part)[:200]}")
        rows[name] = part
        seconds[name] = max(0.0, float(value[2 + 2 * i]) - float(value[2 * i]))
    return rows, seconds


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float, Decimal)):
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


def families_from_rows(spec: QuerySpec, rows: Iterable[Row]) -> list[Family]:
    """Metric families of one query's rows (the declarative part, pure)."""
    label_cols = spec.label_columns()
    fams = [Family(m.name, m.kind, m.help) for m in spec.metrics]
    # Per metric: (its samples' append, sample name, the one column or None, the spec).
    plans = []
    for m, fam in zip(spec.metrics, fams):
        cols = m.columns()
        single = cols[0][0] if len(cols) == 1 and cols[0][1] == 1.0 else None
        plans.append((fam.samples.append, fam.name, single, m))
    for row in rows:
        if spec.skip and any(str(row.get(col)) == value for col, value in spec.skip):
            continue
        labels: Labels = tuple(
            (name, "" if (v := row.get(col)) is None else str(v)) for name, col in label_cols)
        for append, name, single, m in plans:
            if single is not None:
                v = row.get(single)
                # JSON numbers arrive as float or int: the common case, no conversion needed.
                value = float(v) if v.__class__ in (float, int) else _number(v)
            else:
                value = metric_value(m, row)
            if value is not None:
                append((name, labels, value))
    return fams


def json_rows(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a ``json_rows`` query: its one "rows" column holds a JSON array of objects,
    or ``{"columns": [names], "rows": [[values], ...]}`` (the names once, not in every row)."""
    value = rows[0].get("rows") if len(rows) == 1 else None
    if isinstance(value, dict) and isinstance(value.get("columns"), list):
        columns, arrays = value["columns"], value.get("rows", False)
        if arrays is None:  # json_agg over no row
            return []
        if isinstance(arrays, list) and all(
                isinstance(r, list) and len(r) == len(columns) for r in arrays):
            return [dict(zip(columns, r)) for r in arrays]  # lengths checked above
        value = None
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


def _gauge(name: str, help_: str, value: float | None = None) -> Family:
    fam = Family(name, "gauge", help_)
    if value is not None:
        fam.add(float(value))
    return fam


def _counter(name: str, help_: str, value: float | None = None) -> Family:
    fam = Family(name + "_total", "counter", help_)
    if value is not None:
        fam.add(float(value))
    return fam


class BgdbCollector(Collector):
    def __init__(
        self,
        cfg: ExporterConfig,
        queries: tuple[QuerySpec, ...] = QUERIES,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_table(queries)
        self.cfg = cfg
        self.queries = queries
        self._clock = clock
        self._monotonic = monotonic  # the heartbeat snapshot's ages advance by it (tests: faked)
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
        # The parallel queries' thread (then PgBouncer's), beside the scrape's own: one scrape at
        # a time, so one worker, idle between scrapes.
        self._workers = futures.ThreadPoolExecutor(1, thread_name_prefix="bgdb-exporter-worker")
        # The parallel queries' connection (QuerySpec.parallel), opened on first use.
        self._pg_parallel = Database(
            cfg.dsn, statement_timeout_seconds=cfg.statement_timeout_seconds,
            name="postgres-parallel", application_name=APPLICATION_NAME + "-parallel")
        self._parallel_off_left = 0  # scrapes left without it after it could not connect
        self._lock = threading.Lock()
        self._histogram = LatencyHistogram()
        targets = {"postgres", "pgbouncer"} if self._bouncer is not None else {"postgres"}
        names = [q.name for q in (*queries, STATEMENTS_QUERY) if q.target in targets]
        self._errors: dict[str, int] = dict.fromkeys(names, 0)
        self._durations: dict[str, float] = {}  # written by the scrape's two threads too
        self._skipped = 0
        self._skipped_lock = threading.Lock()  # PgBouncer's queries may run on another thread
        self._connect_errors: dict[str, int] = {"postgres": 0, "pgbouncer": 0}
        self._scrapes = 0
        self._backup_errors = 0
        # name -> (monotonic time of the run, rows) for queries with min_interval_seconds.
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        # Queries that failed alone and run alone until they succeed; scrapes left unbatched.
        self._solo: set[str] = set()
        self._unbatched_left = 0
        self._batch_text: dict[tuple[str, ...], str] = {}
        # The heartbeat search's last answer, and whether this scrape serves it (decided once
        # per scrape, so that the search is either left out of the batch and the parallel
        # connection or run). _sent: monotonic time each query's statement was sent.
        self._heartbeats: heartbeat.Snapshot | None = None
        self._heartbeats_fresh = False
        self._sent: dict[str, float] = {}
        self._label_text: dict[Labels, str] = {}  # render()'s, kept between scrapes
        self.batches = 0  # batch statements run (for tests and bench)

    # -- prometheus_client interface ------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        # Names only, so that registering does not query the database.
        for spec in self.queries:
            for fam in families_from_rows(spec, ()):
                yield to_metric(fam)
        yield to_metric(Family(LATENCY_METRIC, "histogram", LATENCY_HELP))
        for fam in self._self_metrics(up=False, bouncer_up=False, duration=0.0):
            yield to_metric(fam)

    def collect(self) -> Iterator[Metric]:
        for fam in self.scrape():
            yield to_metric(fam)

    def scrape(self) -> list[Family]:
        """One scrape's metric families."""
        with self._lock:
            return self._scrape()

    def exposition(self) -> bytes:
        """One scrape in the text exposition format (what the HTTP endpoint serves)."""
        return render(self.scrape(), self._label_text)

    @property
    def running_alone(self) -> frozenset[str]:
        """Queries that failed alone and run outside the batch until they succeed."""
        return frozenset(self._solo)

    @property
    def last_query_durations(self) -> dict[str, float]:
        """Seconds each query took in its last run (for bench/exporter_scrape.py); for batched
        queries, the server's time between the clock readings around it."""
        return dict(self._durations)

    def close(self) -> None:
        self._workers.shutdown(wait=True)
        self._pg.close()
        self._pg_parallel.close()
        if self._bouncer is not None:
            self._bouncer.close()

    # -- one scrape -----------------------------------------------------------------------------

    def _scrape(self) -> list[Family]:
        started = time.monotonic()
        deadline = started + self.cfg.scrape_timeout_seconds
        self._scrapes += 1
        self._heartbeats_fresh = (self._heartbeats is not None
                                  and self._monotonic() < self._heartbeats.valid_until)
        out: list[Family] = []
        bouncer_out: list[Family] = []  # after PostgreSQL's families, as when run in turn
        bouncer_up = False
        pending = self._bouncer is not None

        def scrape_bouncer() -> None:
            # PgBouncer's few statements: on the parallel queries' worker after them, while the
            # batch still keeps this thread waiting (at the scrape's start a second worker only
            # competed with the batch's send for the interpreter), else after PostgreSQL's.
            nonlocal bouncer_up, pending
            if pending and self._bouncer is not None:
                pending = False
                bouncer_up = self._scrape_target(self._bouncer, "pgbouncer", deadline,
                                                 bouncer_out)

        up = self._scrape_target(self._pg, "postgres", deadline, out, then=scrape_bouncer)
        scrape_bouncer()
        out.extend(bouncer_out)
        out.extend(self._backup_metrics())
        if self.cfg.patroni_url:
            out.extend(patroni.families(patroni.fetch(self.cfg.patroni_url), self._clock()))
        duration = time.monotonic() - started
        out.extend(self._self_metrics(up=up, bouncer_up=bouncer_up, duration=duration))
        return out

    def _run(self, db: Database, spec: QuerySpec) -> list[dict[str, Any]]:
        sql = self._sql[spec.name]
        params = self._params if spec.target == "postgres" and _PARAM.search(sql) else None
        self._sent[spec.name] = self._monotonic()
        t0 = time.monotonic()
        try:
            rows = db.query(sql, params)
            return json_rows(spec.name, rows) if spec.json_rows else rows
        finally:
            self._durations[spec.name] = time.monotonic() - t0

    def _run_batch(self, db: Database, specs: list[QuerySpec]) -> dict[str, list[dict[str, Any]]]:
        names = tuple(s.name for s in specs)
        sql = self._batch_text.get(names)
        if sql is None:
            sql = self._batch_text[names] = batch_sql((n, self._sql[n]) for n in names)
        self._sent.update(dict.fromkeys(names, self._monotonic()))
        rows = db.query(sql, self._params)
        value = rows[0].get("batch") if len(rows) == 1 else None
        if isinstance(value, str):  # a json column psycopg did not load (unusual adapters)
            value = json.loads(value)
        self.batches += 1
        parts, seconds = split_batch(list(names), value)
        self._durations.update(seconds)
        for spec in specs:
            if spec.json_rows:
                parts[spec.name] = json_rows(spec.name, parts[spec.name])
        return parts

    def _scrape_target(self, db: Database, target: str, deadline: float, out: list[Family],
                       then: Callable[[], None] | None = None) -> bool:
        """Run the target's queries into ``out``; True when the server answered. ``then`` is
        called by the parallel queries' worker after them (if they run)."""
        specs = [q for q in self.queries if q.target == target]
        if target == "postgres":
            # The probe first, the histogram last (its reading is the least urgent).
            specs.sort(key=lambda q: q.name != PROBE)
            specs.append(STATEMENTS_QUERY)
            batch = [q for q in specs if not q.rows_from and q.min_interval_seconds <= 0
                     and q.name not in self._solo
                     and not (q.name == HEARTBEAT and self._heartbeats_fresh)]
            if self._unbatched_left > 0:
                self._unbatched_left -= 1
                batch = []
            if len(batch) > 1:
                return self._batched(db, specs, batch, deadline, out, then)
        return self._run_each(db, target, specs, deadline, {}, out, retry=False)

    def _batched(self, db: Database, specs: list[QuerySpec], batch: list[QuerySpec],
                 deadline: float, out: list[Family], then: Callable[[], None] | None) -> bool:
        """The postgres target by the batch (and the parallel queries beside it)."""
        parallel: list[QuerySpec] = []
        if self._parallel_off_left > 0:
            self._parallel_off_left -= 1
        else:
            parallel = [q for q in batch if q.parallel]
            batch = [q for q in batch if not q.parallel]
        ready: dict[str, list[dict[str, Any]]] = {}
        built: dict[str, list[Family]] = {}  # their families, made in their thread
        failed: dict[str, str] = {}  # the server's error (lock or statement timeout, SQL error)
        broken: list[bool] = []

        def run_parallel() -> None:
            for spec in parallel:
                try:
                    rows = ready[spec.name] = self._run(self._pg_parallel, spec)
                except psycopg.Error as exc:
                    broken.append(not self._pg_parallel.connected)
                    if not broken[-1]:
                        # The server answered with an error: counted after the join (one
                        # thread writes the counters). Run again on the main connection it would
                        # most likely wait out the same lock or timeout a second time.
                        failed[spec.name] = _one_line(exc)
                        continue
                    # Not counted: the query runs again on the main connection. A dropped
                    # connection would be reopened by the next query: against a hung server
                    # that costs a connect_timeout per query, past the budget.
                    log.info("%s on the parallel connection: %s", spec.name, _one_line(exc))
                    break
                # Their families too, while the batch keeps the other thread waiting (the
                # heartbeat snapshot and the rows_from dependents stay that thread's). One that
                # cannot be made here is made there again, where its error surfaces as before.
                if spec.name != HEARTBEAT:
                    try:
                        built[spec.name] = self._families(spec, rows)
                    except Exception as exc:  # noqa: BLE001 - made again, and raised, later
                        log.debug("%s: families left to the scrape: %s", spec.name, exc)
            if then is not None:
                then()

        def count_failed() -> list[QuerySpec]:
            """Count the parallel queries' errors; ``specs`` without them (their dependents
            stay: they count an error for the missing rows)."""
            for name, message in failed.items():
                self._errors[name] += 1
                log.warning("query %s failed: %s", name, message)
            return [q for q in specs if q.name not in failed]

        # On a worker thread that lives as long as the collector: starting a thread per scrape
        # cost ~0.3 ms of it.
        thread = self._workers.submit(run_parallel) if parallel else None
        try:
            results = self._run_batch(db, batch)
        except psycopg.Error as exc:
            if thread is not None:
                futures.wait([thread])
            if isinstance(exc, DatabaseHung):
                self._errors[PROBE] += 1
                log.warning("batch: %s", exc)
                return False
            if not db.connected:
                self._connect_errors["postgres"] += 1
                log.warning("postgres unreachable (batch): %s", _one_line(exc))
                return False
            log.info("batch failed (%s); running its queries one by one", _one_line(exc))
            before = set(self._solo)
            up = self._run_each(db, "postgres", count_failed(), deadline, {}, out, retry=True)
            if self._solo == before:
                self._unbatched_left = UNBATCHED_SCRAPES
            return up
        except BaseException:
            if thread is not None:
                futures.wait([thread])
            raise
        # The batch's families are built while the parallel queries still run (their thread
        # waits on its socket, not on the interpreter); theirs and their dependents' after.
        names = {q.name for q in parallel}
        later = [q for q in specs if q.name in names or q.rows_from in names]
        first = [q for q in specs if q not in later]
        up = self._run_each(db, "postgres", first, deadline, results, out, retry=False)
        if thread is None:
            return up
        thread.result()
        if not up:  # the main connection broke after the batch
            return False
        if any(broken):
            self._parallel_off_left = UNBATCHED_SCRAPES
        results.update(ready)
        left = count_failed()
        later = [q for q in later if q in left]
        return self._run_each(db, "postgres", later, deadline, results, out, retry=False,
                              built=built) or up

    def _run_each(self, db: Database, target: str, specs: list[QuerySpec], deadline: float,
                  results: dict[str, list[dict[str, Any]]], out: list[Family],
                  retry: bool, built: Mapping[str, list[Family]] | None = None) -> bool:
        """Turn ``specs`` into families, running those without rows in ``results`` one by one.
        ``retry``: after a failed batch (a query that fails goes solo). ``built``: families
        already made from ``results``."""
        up = bool(results)
        for i, spec in enumerate(specs):
            if spec.rows_from and i > 0:
                parent = results.get(spec.rows_from)
                if parent is None:
                    self._errors[spec.name] += 1
                else:
                    out.extend(families_from_rows(spec, derived_rows(spec, parent)))
                continue
            rows = results.get(spec.name)
            if rows is None and spec.name == HEARTBEAT and self._heartbeats_fresh:
                out.extend(self._heartbeat_families(spec, results))
                up = True
                continue
            if rows is None:
                cached = self._cache.get(spec.name)
                if (cached is not None and spec.min_interval_seconds > 0
                        and time.monotonic() - cached[0] < spec.min_interval_seconds):
                    out.extend(families_from_rows(spec, cached[1]))
                    continue
                # The probe always runs, so that *_up tells the truth even when the budget is
                # spent.
                if (i > 0 or up) and time.monotonic() >= deadline:
                    left = sum(1 for s in specs[i:] if s.name not in results and not s.rows_from)
                    with self._skipped_lock:
                        self._skipped += left
                    log.warning("scrape budget spent: %d %s queries skipped", left, target)
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
                    if retry:  # a query already solo stays so
                        self._solo.add(spec.name)
                    log.warning("query %s failed: %s", spec.name, _one_line(exc))
                    up = True
                    continue
                self._solo.discard(spec.name)
                if spec.min_interval_seconds > 0:
                    self._cache[spec.name] = (time.monotonic(), rows)
            if spec.name == HEARTBEAT:
                try:
                    self._heartbeats = heartbeat.snapshot(
                        rows, self._sent.get(spec.name, self._monotonic()),
                        self.cfg.heartbeat_interval_seconds, self.cfg.heartbeat_cache_seconds)
                except (KeyError, TypeError, ValueError) as exc:
                    self._errors[spec.name] += 1
                    self._heartbeats = None
                    log.warning("query %s: %s", spec.name, _one_line(exc))
                else:
                    out.extend(self._heartbeat_families(spec, results))
                up = True
                continue
            up = True
            results[spec.name] = rows
            fams = built.get(spec.name) if built else None
            out.extend(self._families(spec, rows) if fams is None else fams)
        return up

    def _families(self, spec: QuerySpec, rows: list[dict[str, Any]]) -> list[Family]:
        return self._latency(rows) if spec is STATEMENTS_QUERY else families_from_rows(spec, rows)

    def _heartbeat_families(self, spec: QuerySpec,
                            results: dict[str, list[dict[str, Any]]]) -> list[Family]:
        """The per-agent families from the snapshot as of now; its totals row goes into
        ``results`` for agent_summary (rows_from)."""
        assert self._heartbeats is not None
        now, interval = self._monotonic(), self.cfg.heartbeat_interval_seconds
        results[spec.name] = [heartbeat.totals_at(self._heartbeats, now, interval)]
        return heartbeat.families_at(self._heartbeats, now, interval, spec.metrics)

    def _latency(self, rows: list[dict[str, Any]]) -> list[Family]:
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
        fam = Family(LATENCY_METRIC, "histogram", LATENCY_HELP)
        bucket = LATENCY_METRIC + "_bucket"
        for le, count in self._histogram.cumulative():
            fam.samples.append((bucket, (("le", le),), count))
        fam.samples.append((LATENCY_METRIC + "_count", (), float(self._histogram.count)))
        fam.samples.append((LATENCY_METRIC + "_sum", (), self._histogram.sum_seconds))
        return [fam]

    def _backup_metrics(self) -> list[Family]:
        path = self.cfg.backup_status_file
        if not path:
            return []
        ok = 1.0
        out: list[Family] = []
        try:
            figures = backup_status.read(path)
        except (OSError, backup_status.BackupStatusError) as exc:
            self._backup_errors += 1
            ok = 0.0
            log.warning("backup status file: %s", _one_line(exc))
        else:
            for name, help_, value in backup_status.metrics(figures, self._clock()):
                out.append(_gauge(name, help_, value))
        out.append(_gauge(
            "bgdb_backup_status_ok", "1 if the backup status file was read and understood.", ok))
        out.append(_counter(
            "bgdb_backup_status_errors",
            "Scrapes where the backup status file was missing or invalid.",
            self._backup_errors,
        ))
        return out

    def _self_metrics(self, *, up: bool, bouncer_up: bool, duration: float) -> list[Family]:
        out: list[Family] = [
            _gauge("bgdb_up", "1 if PostgreSQL answered this scrape.", float(up)),
        ]
        if self._bouncer is not None:
            out.append(_gauge(
                "bgdb_pgbouncer_up", "1 if PgBouncer's admin console answered.", float(bouncer_up)))
        out.append(_gauge(
            "bgdb_exporter_scrape_duration_seconds",
            "Time this scrape spent collecting (database and files).", duration))
        errors = _counter("bgdb_exporter_query_errors", "Failed runs of each query.")
        for name, n in sorted(self._errors.items()):
            errors.add(float(n), (("query", name),))
        out.append(errors)
        durations = _gauge(
            "bgdb_exporter_query_duration_seconds",
            "Duration of each query's last run (batched queries: the server's time on it).")
        for name, seconds in sorted(self._durations.items()):
            durations.add(seconds, (("query", name),))
        out.append(durations)
        out.append(_counter(
            "bgdb_exporter_queries_skipped",
            "Queries not run because the scrape budget (scrape_timeout_seconds) was spent.",
            self._skipped))
        out.append(_counter("bgdb_exporter_scrapes", "Scrapes served.", self._scrapes))
        conns = _counter("bgdb_exporter_connections", "Database connections opened (reconnects).")
        conns.add(float(self._pg.connects), (("target", "postgres"),))
        conns.add(float(self._pg_parallel.connects), (("target", "postgres-parallel"),))
        if self._bouncer is not None:
            conns.add(float(self._bouncer.connects), (("target", "pgbouncer"),))
        out.append(conns)
        conn_errors = _counter(
            "bgdb_exporter_connect_errors",
            "Scrapes where the target could not be reached at all.")
        conn_errors.add(float(self._connect_errors["postgres"]), (("target", "postgres"),))
        if self._bouncer is not None:
            conn_errors.add(float(self._connect_errors["pgbouncer"]), (("target", "pgbouncer"),))
        out.append(conn_errors)
        out.append(_gauge(
            "bgdb_exporter_heartbeat_interval_seconds",
            "Expected agent heartbeat interval used for bgdb_agent_missed_heartbeats.",
            self.cfg.heartbeat_interval_seconds))
        out.append(_gauge(
            "bgdb_exporter_max_agents", "Cap on agents with per-agent series.",
            self.cfg.max_agents))
        return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
