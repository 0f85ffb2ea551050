"""Copy the agents' SQLite shared_state.db into PostgreSQL.

    bgdb-migrate-sqlite --source shared_state.db --target postgresql|DSN [--dry-run] ...
    (python -m bgdb.sqlite_migration.migrate)

Before anything is written the SQLite file is checked (exists, is SQLite, not locked, passes
quick_check), its tables and columns are matched to the mapping (any problem: one line per
table, exit 2, nothing written), the target is checked (schema applied, privileges), and the file
is copied to a timestamped backup. Then each table streams in rowid order, in batches: convert,
check the agents each row references (unknown ones become placeholder agents, or the rows are
skipped), COPY, record issues and the ledger, advance the id sequence - one transaction per batch.
A failed batch rolls back whole; the next run resumes after the last committed batch, and a
second run over the same file copies nothing twice.

Exit status: 0 done (issues, if any, are reported and kept in bgdb_sqlite_migration.issues),
1 stopped while running (rerun to resume), 2 bad input or target (nothing written).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import sqlite3
import sys
import threading
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_dumps

from bgdb.sqlite_migration import MigrationError, mapping, source, target
from bgdb.sqlite_migration.convert import Converted, Issue, RowConverter, row_json
from bgdb.sqlite_migration.mapping import TablePlan
from bgdb.sqlite_migration.progress import Progress

# Errors that a bad row causes: the batch is retried row by row to find and reject it.
ROW_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError)
PLACEHOLDER_TYPE = "unknown"
PLACEHOLDER_STATE = "unknown"


@dataclass
class Options:
    source: Path
    target: str = "postgresql"
    env_file: Path | None = None
    mapping_file: Path | None = None
    batch_size: int = 10_000
    dry_run: bool = False
    unknown_agents: str = "placeholder"  # or "skip"
    unmapped: str = "error"  # or "keep", "ignore"
    naive_timezone: str = "UTC"
    backup: bool = True
    backup_dir: Path | None = None
    busy_timeout: float = 5.0
    integrity_check: bool = True
    source_key: str | None = None
    premake_days: int = 30
    progress: bool = True


@dataclass
class TableReport:
    target: str
    source: str
    total: int = 0  # rows in the SQLite table
    already: int = 0  # migrated by earlier runs
    copied: int = 0
    rejected: int = 0
    issues: Counter[str] = field(default_factory=Counter)
    placeholders: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Report:
    source_key: str
    dry_run: bool
    tables: list[TableReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    examples: list[Issue] = field(default_factory=list)
    backup: Path | None = None
    seconds: float = 0.0
    plans: list[TablePlan] = field(default_factory=list)

    @property
    def copied(self) -> int:
        return sum(t.copied for t in self.tables)


def conversion_options(mapping_: dict[str, Any], naive_timezone: str,
                       unmapped: str) -> dict[str, Any]:
    """What the conversions depend on; recorded with the source, compared on every resume."""
    return {"mapping": mapping_, "naive_timezone": naive_timezone, "unmapped": unmapped}


def timezone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise MigrationError(f"--naive-timezone {name!r}: unknown time zone") from exc


@dataclass
class Prepared:
    """Everything checked before the first write."""

    path: Path
    sqlite: sqlite3.Connection
    plans: list[TablePlan]
    notes: list[str]
    mapping: dict[str, Any]
    naive_tz: tzinfo


def prepare_source(path: Path, mapping_file: Path | None, unmapped: str, naive_timezone: str,
                   *, busy_timeout: float = 5.0, integrity_check: bool = True,
                   mapping_: dict[str, Any] | None = None) -> Prepared:
    tz = timezone(naive_timezone)
    effective = mapping_ if mapping_ is not None else mapping.effective_mapping(mapping_file)
    source.check_file(path)
    conn = source.open_readonly(path, busy_timeout)
    try:
        if integrity_check:
            source.integrity_check(conn, path)
        found = source.tables(conn, path)
        res = mapping.resolve(effective, found, unmapped)
        if res.errors:
            raise MigrationError("\n".join(res.errors))
        if not res.plans:
            names = ", ".join(t.name for t in found) or "none"
            raise MigrationError(f"{path}: no table to migrate (its tables: {names}); see"
                                 " --print-mapping for the names looked for")
    except BaseException:
        conn.close()
        raise
    return Prepared(path, conn, res.plans, res.notes, effective, tz)


T = TypeVar("T")


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate `items` in a thread, up to `depth` ahead: the next batch is read from SQLite and
    converted while this one is written to PostgreSQL (the writer mostly waits on the server,
    with the GIL released). Memory stays bounded: at most depth + 2 batches exist at once.
    An exception in the producer is raised here; leaving the loop early stops the producer."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))

    thread = threading.Thread(target=run, name="sqlite-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        thread.join()


class _RawRows:
    """The SQLite rows of a batch by rowid, as JSON for the issue of a rejected row."""

    def __init__(self, conv: RowConverter, rows: list[tuple[Any, ...]]) -> None:
        self.conv = conv
        self.rows = rows
        self._by_rowid: dict[int, tuple[Any, ...]] | None = None

    def json(self, rowid: int) -> str:
        if self._by_rowid is None:
            self._by_rowid = {r[0]: r for r in self.rows}
        return row_json(self.conv.source_names, self._by_rowid[rowid])


# The Python type each mapping type yields, by the PostgreSQL type it can be sent as in binary.
_BINARY_OK = {"int8": "bigint", "int4": "integer", "float8": "float", "numeric": "numeric",
              "timestamptz": "timestamp", "jsonb": "json", "text": "text"}


def _json_text(obj: Any) -> Any:
    return obj  # json columns arrive as JSON text already (the original SQLite text, checked)


class _Writer:
    """COPY of converted rows into one table.

    Binary COPY when every column's converted Python type matches its PostgreSQL type (the
    default mapping always does): PostgreSQL then parses no text for numbers and timestamps.
    When the session is a superuser, each batch runs with session_replication_role = replica,
    which skips the per-row foreign key triggers: the batch has already locked every agent and
    help request it references (Migration._check_references, FOR KEY SHARE, once per batch),
    which is what those triggers would check row by row. Unique, NOT NULL and CHECK constraints
    still apply."""

    def __init__(self, pg: target.Connection, plan: TablePlan, conv: RowConverter) -> None:
        self.pg = pg
        cols = list(plan.copy_columns)
        rows = pg.execute(
            "SELECT a.attname, a.atttypid::integer, t.typname FROM pg_attribute a"
            " JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = %s::regclass"
            " AND a.attname = ANY(%s)", [f"public.{plan.target}", cols]).fetchall()
        types = {r[0]: (r[1], r[2]) for r in rows}
        self.oids = [types[c][0] for c in cols]
        self.binary = all(_BINARY_OK.get(types[c][1]) == t
                          for c, t in zip(cols, conv.out_types, strict=True))
        fmt = sql.SQL(" (FORMAT BINARY)") if self.binary else sql.SQL("")
        self.stmt = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            target.ident(plan.target), sql.SQL(", ").join(map(sql.Identifier, cols)), fmt)
        row = pg.execute("SELECT current_setting('is_superuser')").fetchone()
        self.skip_fk_triggers = bool(row and row[0] == "on")

    def copy(self, good: Sequence[Converted]) -> None:
        if not good:
            return
        if self.skip_fk_triggers:
            self.pg.execute("SET LOCAL session_replication_role = replica")
        with self.pg.cursor() as cur:
            if self.binary:
                set_json_dumps(_json_text, context=cur)
            with cur.copy(self.stmt) as copy:
                if self.binary:
                    copy.set_types(self.oids)
                for g in good:
                    copy.write_row(g.values)


class RunError(MigrationError):
    """Stopped while running; committed batches stay, the next run resumes after them."""

    exit_code = 1


class Migration:
    def __init__(self, opts: Options, out: Callable[[str], None] = print) -> None:
        self.opts = opts
        self.out = out
        # Dry run only: what earlier tables of this run would have written.
        self.dry_agents: set[str] = set()
        self.dry_requests: set[str] = set()

    # --------------------------------------------------------------------------------------------
    def run(self) -> Report:
        opts = self.opts
        started = time.monotonic()
        if opts.batch_size < 1:
            raise MigrationError("--batch-size must be at least 1")
        path = opts.source
        prep = prepare_source(path, opts.mapping_file, opts.unmapped, opts.naive_timezone,
                              busy_timeout=opts.busy_timeout,
                              integrity_check=opts.integrity_check)
        key = opts.source_key or str(path.resolve())
        report = Report(source_key=key, dry_run=opts.dry_run, notes=list(prep.notes),
                        plans=list(prep.plans))
        options = conversion_options(prep.mapping, opts.naive_timezone, opts.unmapped)
        dsn = target.resolve_target(opts.target, opts.env_file)
        try:
            with target.connect(dsn) as pg:
                target.check_schema(pg, {p.target: p.copy_columns for p in prep.plans})
                if not opts.dry_run:
                    target.check_privileges(pg, [p.target for p in prep.plans])
                recorded = target.read_source(pg, key)
                if recorded is not None:
                    self._check_same_options(recorded, options)
                migration_time = (recorded["migration_time"] if recorded
                                  else datetime.now(UTC).replace(microsecond=0))
                if opts.dry_run:
                    self._run_tables(pg, prep, key, migration_time, report)
                else:
                    if not target.try_lock(pg, key):
                        raise target.TargetError(f"another migration of {key} is running"
                                                 " (advisory lock held); wait for it")
                    try:
                        if opts.backup:
                            report.backup = source.backup(path, opts.backup_dir,
                                                          opts.busy_timeout)
                            self.out(f"backup: {report.backup}")
                        target.ensure_ledger(pg)
                        target.register_source(pg, key, path, options, migration_time)
                        if opts.premake_days > 0:
                            target.premake_partitions(pg, opts.premake_days)
                        self._run_tables(pg, prep, key, migration_time, report)
                        target.complete_source(pg, key)
                    finally:
                        if not pg.closed and not pg.broken:
                            target.unlock(pg, key)
        finally:
            prep.sqlite.close()
        report.seconds = time.monotonic() - started
        return report

    def _check_same_options(self, recorded: dict[str, Any], options: dict[str, Any]) -> None:
        before = recorded["options"]
        changed = [k for k in ("mapping", "naive_timezone", "unmapped")
                   if before.get(k) != json.loads(json.dumps(options[k]))]
        if changed:
            raise MigrationError(
                f"{recorded['source_key']} was first migrated with other {' and '.join(changed)}"
                f" (at {recorded['first_run_at']:%Y-%m-%d %H:%M:%S%z}); resume with the same"
                " options, or migrate into a fresh database")

    # --------------------------------------------------------------------------------------------
    def _run_tables(self, pg: target.Connection, prep: Prepared, key: str,
                    migration_time: datetime, report: Report) -> None:
        states = target.table_states(pg, key)
        for plan in prep.plans:
            state = states.get(plan.target, {})
            try:
                tr = self._run_table(pg, prep, key, plan, state, migration_time, report)
            except source.SourceError as exc:
                # Found while streaming (e.g. a corrupt page quick_check was told to skip): the
                # batches before it are committed, the one in progress was never started.
                where = "" if self.opts.dry_run else "; committed batches are kept, rerun to resume"
                raise RunError(f"{plan.target}: {exc}{where}") from exc
            report.tables.append(tr)

    def _run_table(self, pg: target.Connection, prep: Prepared, key: str, plan: TablePlan,
                   state: dict[str, Any], migration_time: datetime,
                   report: Report) -> TableReport:
        opts = self.opts
        t0 = time.monotonic()
        after = int(state.get("last_rowid") or 0)
        tr = TableReport(plan.target, plan.source)
        tr.total = source.count(prep.sqlite, prep.path, plan)
        todo = source.count(prep.sqlite, prep.path, plan, after) if after else tr.total
        tr.already = tr.total - todo
        conv = RowConverter(plan, naive_tz=prep.naive_tz, migration_time=migration_time)
        writer = _Writer(pg, plan, conv)
        label = f"{plan.target:<20}"
        bar = Progress(label, todo, enabled=opts.progress and todo > 0)
        def produce() -> Iterator[tuple[list[tuple[Any, ...]], list[Converted]]]:
            for rows in source.batches(prep.sqlite, prep.path, plan, after, opts.batch_size):
                yield rows, [conv.convert(r) for r in rows]

        try:
            for rows, converted in prefetch(produce()):
                self._batch(pg, key, plan, conv, writer, rows, converted, tr, report)
                bar.update(len(rows))
        finally:
            bar.close()
        if not opts.dry_run:
            target.complete_table(pg, key, plan.target, plan.source)
        tr.seconds = time.monotonic() - t0
        return tr

    # --------------------------------------------------------------------------------------------
    def _batch(self, pg: target.Connection, key: str, plan: TablePlan, conv: RowConverter,
               writer: _Writer, rows: list[tuple[Any, ...]], converted: list[Converted],
               tr: TableReport, report: Report) -> None:
        issues: list[Issue] = []
        candidates: list[Converted] = []
        for c in converted:
            if c.issues:
                issues.extend(c.issues)
            if c.reject is None:
                candidates.append(c)
        raw = _RawRows(conv, rows)
        id_slot = conv.out_columns.index("id")
        seq_id = max((c.values[id_slot] for c in candidates), default=None)
        if self.opts.dry_run:
            good, placeholders = self._check_references(pg, plan, conv, candidates, issues, raw,
                                                        lock=False)
            self._account(tr, report, issues, len(rows) - len(good), len(good),
                          sorted(placeholders))
            self._remember(plan, conv, good)
            return
        try:
            with pg.transaction():
                batch_issues = list(issues)
                good, placeholders = self._check_references(pg, plan, conv, candidates,
                                                            batch_issues, raw, lock=True)
                created = self._write(pg, key, plan, conv, rows, good, batch_issues,
                                      placeholders, lambda: writer.copy(good), seq_id)
        except ROW_ERRORS:
            # One bad row (a value PostgreSQL refuses, a duplicate key) fails the whole COPY:
            # redo the batch row by row, rejecting only the rows PostgreSQL refuses.
            kept: list[Converted] = []
            with pg.transaction():
                batch_issues = list(issues)
                good, placeholders = self._check_references(pg, plan, conv, candidates,
                                                            batch_issues, raw, lock=True)
                created = self._write(
                    pg, key, plan, conv, rows, kept, batch_issues, placeholders,
                    lambda: kept.extend(self._copy_one_by_one(pg, plan, writer, good,
                                                              batch_issues, raw)), seq_id)
            good = kept
        self._account(tr, report, batch_issues, len(rows) - len(good), len(good), created)

    def _write(self, pg: target.Connection, key: str, plan: TablePlan, conv: RowConverter,
               rows: list[tuple[Any, ...]], good: list[Converted], issues: list[Issue],
               placeholders: dict[str, tuple[str, int]], copy: Callable[[], None],
               seq_id: int | None) -> list[str]:
        """One batch, inside the caller's transaction: placeholder agents, the rows (`copy`
        fills `good` when it decides row by row), issues, ledger, sequence."""
        created = self._create_placeholders(pg, plan, placeholders, issues) if placeholders \
            else []
        copy()
        target.write_issues(pg, key, issues)
        slot = conv.out_columns.index("id")
        ids = [g.values[slot] for g in good]
        min_id, max_id = (min(ids), max(ids)) if ids else (None, None)
        target.record_batch(pg, key, plan.target, plan.source, rows[-1][0], len(good),
                            len(rows) - len(good), min_id, max_id)
        # Past every id of the batch, also those of rows PostgreSQL refused or that reference
        # an unknown row: one of them may be inserted by hand later, with its own id.
        if seq_id is not None and seq_id > 0:
            target.advance_sequence(pg, plan.target, seq_id)
        return created

    def _copy_one_by_one(self, pg: target.Connection, plan: TablePlan, writer: _Writer,
                         good: list[Converted], issues: list[Issue],
                         raw: _RawRows) -> list[Converted]:
        kept = []
        for g in good:
            try:
                with pg.transaction():  # a savepoint
                    writer.copy([g])
                kept.append(g)
            except ROW_ERRORS as exc:
                reason = (exc.diag.message_primary or str(exc)).strip()
                detail = exc.diag.message_detail
                issues.append(Issue("rejected", plan.target, g.rowid, None,
                                    f"PostgreSQL refused the row: {reason}"
                                    + (f" ({detail})" if detail else ""), raw.json(g.rowid)))
        return kept

    def _remember(self, plan: TablePlan, conv: RowConverter, good: list[Converted]) -> None:
        """Dry run: the agents and help requests this run would have written by now."""
        if plan.target == "agents":
            slot = conv.out_columns.index("agent_id")
            self.dry_agents.update(g.values[slot] for g in good)
        elif plan.target == "help_requests":
            slot = conv.out_columns.index("request_id")
            self.dry_requests.update(g.values[slot] for g in good)

    # --------------------------------------------------------------------------------------------
    def _check_references(self, pg: target.Connection, plan: TablePlan, conv: RowConverter,
                          good: list[Converted], issues: list[Issue], raw: _RawRows, *,
                          lock: bool) -> tuple[list[Converted], dict[str, tuple[str, int]]]:
        """Rows whose referenced agent / help request is unknown in PostgreSQL: placeholder
        agents (agent_id -> (column, first rowid)) or, per --unknown-agents skip, rejected.

        With lock, the referenced rows are locked FOR KEY SHARE until the batch commits - what
        a foreign key check does per row, done here once per batch - so nobody can delete them
        meanwhile and the batch may skip the per-row foreign key triggers (see _Writer)."""
        agent_slots = [(conv.out_columns.index(c.target), c.target) for c in plan.columns
                       if c.references == "agents" and c.key is None]
        request_slots = [(conv.out_columns.index(c.target), c.target) for c in plan.columns
                         if c.references == "help_requests" and c.key is None]
        placeholders: dict[str, tuple[str, int]] = {}
        if not good or not (agent_slots or request_slots):
            return good, placeholders
        suffix = " ORDER BY 1 FOR KEY SHARE" if lock else ""
        unknown_agents: set[str] = set()
        if agent_slots:
            wanted = {g.values[s] for g in good for s, _ in agent_slots} - {None}
            if wanted:
                found = {r[0] for r in pg.execute(
                    "SELECT agent_id FROM agents WHERE agent_id = ANY(%s)" + suffix,
                    [sorted(wanted)]).fetchall()}
                unknown_agents = wanted - found - self.dry_agents
        missing_requests: set[str] = set()
        if request_slots:
            wanted_ids = {g.values[s] for g in good for s, _ in request_slots} - {None}
            if wanted_ids:
                found_ids = {r[0] for r in pg.execute(
                    "SELECT request_id FROM help_requests WHERE request_id = ANY(%s)" + suffix,
                    [sorted(wanted_ids)]).fetchall()}
                missing_requests = wanted_ids - found_ids - self.dry_requests
        if not unknown_agents and not missing_requests:
            return good, placeholders
        kept = []
        skip = self.opts.unknown_agents == "skip"
        for g in good:
            reason = None
            for s, col in request_slots:
                if g.values[s] in missing_requests:
                    reason = f"unknown help request {g.values[s]!r} in {col}"
            for s, col in agent_slots:
                agent = g.values[s]
                if agent in unknown_agents:
                    if skip:
                        reason = reason or (f"unknown agent {agent!r} in {col}"
                                            " (--unknown-agents skip)")
                    elif agent not in placeholders:
                        placeholders[agent] = (col, g.rowid)
            if reason:
                issues.append(Issue("rejected", plan.target, g.rowid, None, reason,
                                    raw.json(g.rowid)))
            else:
                kept.append(g)
        return kept, placeholders

    def _create_placeholders(self, pg: target.Connection, plan: TablePlan,
                             placeholders: dict[str, tuple[str, int]],
                             issues: list[Issue]) -> list[str]:
        names = sorted(placeholders)
        metas = [json.dumps({"bgdb_placeholder": True, "created_by": "bgdb-migrate-sqlite",
                             "first_seen_in": f"{plan.target}.{placeholders[n][0]}"})
                 for n in names]
        created = [r[0] for r in pg.execute(
            "INSERT INTO agents (agent_id, name, type, state, metadata)"
            " SELECT a, a, %s, %s, m::jsonb FROM unnest(%s::text[], %s::text[]) AS u (a, m)"
            " ON CONFLICT (agent_id) DO NOTHING RETURNING agent_id",
            [PLACEHOLDER_TYPE, PLACEHOLDER_STATE, names, metas]).fetchall()]
        for name in created:
            col, rowid = placeholders[name]
            issues.append(Issue("placeholder_agent", plan.target, rowid, col, name,
                                json.dumps(name)))
        return created

    def _account(self, tr: TableReport, report: Report, issues: list[Issue], rejected: int,
                 copied: int, placeholders: Sequence[str]) -> None:
        tr.copied += copied
        tr.rejected += rejected
        tr.placeholders.extend(placeholders)
        if self.opts.dry_run and placeholders:
            tr.issues["placeholder_agent"] += len(placeholders)
        for issue in issues:
            tr.issues[issue.kind] += 1
            if sum(1 for e in report.examples if e.kind == issue.kind) < 3:
                report.examples.append(issue)


# ------------------------------------------------------------------------------------------------
# Output


def render(report: Report) -> list[str]:
    verb = "would copy" if report.dry_run else "copied"
    lines = []
    if report.dry_run:
        lines += ["map " + mapping.plan_summary(plan) for plan in report.plans]
    header = f"{'table':<21}{'source':<21}{'sqlite rows':>12}{'before':>10}{verb:>12}" \
             f"{'rejected':>10}  issues"
    lines.append(header)
    for t in report.tables:
        issues = ", ".join(f"{k} {v}" for k, v in sorted(t.issues.items()) if k != "rejected")
        lines.append(f"{t.target:<21}{t.source:<21}{t.total:>12}{t.already:>10}{t.copied:>12}"
                     f"{t.rejected:>10}  {issues or '-'}")
    placeholders = sorted({p for t in report.tables for p in t.placeholders})
    if placeholders:
        shown = ", ".join(placeholders[:10]) + (" ..." if len(placeholders) > 10 else "")
        lines.append(f"placeholder agents {'to create' if report.dry_run else 'created'}"
                     f" ({len(placeholders)}): {shown}")
    for e in report.examples:
        where = f"{e.table}" + (f" rowid {e.rowid}" if e.rowid is not None else "") + \
            (f" {e.column}" if e.column else "")
        raw = f": {e.raw[:120]}" if e.raw and e.kind != "placeholder_agent" else ""
        lines.append(f"  e.g. {e.kind} at {where}: {e.detail}{raw}")
    for note in report.notes:
        lines.append(f"note: {note}")
    rate = report.copied / report.seconds if report.seconds else 0.0
    if report.dry_run:
        lines.append(f"dry run: nothing written ({report.seconds:.1f} s)")
    else:
        lines.append(f"done: {report.copied} rows in {report.seconds:.1f} s ({rate:,.0f} rows/s)")
        if any(t.issues for t in report.tables):
            lines.append(f"issues are kept in {target.SCHEMA}.issues"
                         f" (source_key = {report.source_key!r})")
    return lines


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bgdb-migrate-sqlite",
        description="Copy the agents' SQLite shared_state.db into PostgreSQL (resumable).",
        epilog="The target role must own the tables or be a superuser. Issues (invalid JSON,"
               " rejected rows, placeholder agents) are kept in bgdb_sqlite_migration.issues.")
    ap.add_argument("--source", type=Path, default=Path("shared_state.db"),
                    help="the SQLite file (default: shared_state.db)")
    ap.add_argument("--target", default="postgresql",
                    help="'postgresql' (the POSTGRESQL_* settings, see --env-file) or a libpq"
                         " connection string / URI (default: postgresql)")
    ap.add_argument("--env-file", type=Path,
                    help="read POSTGRESQL_* from this file (the environment wins)")
    ap.add_argument("--mapping", type=Path, dest="mapping_file",
                    help="JSON or TOML file overriding the default mapping (see --print-mapping)")
    ap.add_argument("--print-mapping", action="store_true",
                    help="print the default mapping as JSON and exit")
    ap.add_argument("--dry-run", action="store_true",
                    help="report what would move (reads everything, writes nothing)")
    ap.add_argument("--unknown-agents", choices=("placeholder", "skip"), default="placeholder",
                    help="rows referencing an agent PostgreSQL does not know: create a"
                         " placeholder agent (default) or skip the row")
    ap.add_argument("--unmapped", choices=("error", "keep", "ignore"), default="error",
                    help="SQLite columns the mapping does not know: stop (default), keep them"
                         " in the table's JSON column, or leave them behind")
    ap.add_argument("--naive-timezone", default="UTC",
                    help="zone of timestamps stored without one (default UTC, like SQLite's"
                         " CURRENT_TIMESTAMP)")
    ap.add_argument("--batch-size", type=int, default=10_000, help="rows per transaction")
    ap.add_argument("--backup-dir", type=Path, help="where the backup goes (default: beside"
                    " the source)")
    ap.add_argument("--no-backup", dest="backup", action="store_false",
                    help="skip the timestamped backup copy")
    ap.add_argument("--busy-timeout", type=float, default=5.0,
                    help="seconds to wait for a locked SQLite file (default 5)")
    ap.add_argument("--skip-integrity-check", dest="integrity_check", action="store_false",
                    help="skip PRAGMA quick_check (it reads the whole file once)")
    ap.add_argument("--source-key",
                    help="name of this source in the ledger (default: the file's absolute path;"
                         " set it to resume after moving the file)")
    ap.add_argument("--premake-days", type=int, default=30,
                    help="create daily partitions for this many past days first (default 30,"
                         " the retention); older rows go to the DEFAULT partition")
    ap.add_argument("--no-progress", dest="progress", action="store_false",
                    help="no progress line on stderr")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.print_mapping:
        print(json.dumps(mapping.DEFAULT_MAPPING, indent=2))
        return 0
    opts = Options(**{k: v for k, v in vars(args).items() if k != "print_mapping"})
    migration = Migration(opts)
    try:
        report = migration.run()
    except KeyboardInterrupt:
        print("interrupted: the current batch was rolled back; run again to resume",
              file=sys.stderr)
        return 130
    except MigrationError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"error: PostgreSQL: {first} (the batch was rolled back; run again to resume)",
              file=sys.stderr)
        return 1
    for line in render(report):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
