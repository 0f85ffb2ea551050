"""Compare the SQLite file with what the migration wrote to PostgreSQL.

    bgdb-validate-migration --source shared_state.db --target postgresql|DSN [--samples 20]
    (python -m bgdb.sqlite_migration.validate)

Per table:
  * counts: SQLite rows, minus those the migration rejected (kept in the issues table), against
    the PostgreSQL rows in the migrated id range (placeholder agents the migration created are
    counted apart);
  * a content checksum: every SQLite row is converted again, exactly as the migration did (the
    options recorded with the source in the ledger), and each row of either side is hashed from
    its canonical values; the sums of the hashes (order-independent), per block of 10,000 ids,
    must be equal. Where a block differs, its rows are compared one by one and the first
    differing ids are named;
  * spot checks: random SQLite rows fetched from PostgreSQL by id and compared column by column;
  * NULLs: per column, the NULL values of the migrated rows on either side (a NULL the seed's
    schema allows - a metric without a value, say - is kept as NULL, not turned into a default
    or left behind); the report names the columns that hold any, and a count that differs
    between the sides fails the table.

Run it before the agents write to PostgreSQL: their updates (last_heartbeat, state, ...) change
the content of migrated rows, and the checksum then reports them.
Exit status: 0 every table matches, 1 a mismatch (the summary says where), 2 bad input.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from bgdb.sqlite_migration import MigrationError, source, target
from bgdb.sqlite_migration.convert import RowConverter, canonical_json_loads
from bgdb.sqlite_migration.mapping import TablePlan
from bgdb.sqlite_migration.migrate import prepare_source, timezone
from bgdb.sqlite_migration.progress import Progress

BLOCK = 10_000  # ids per checksum block
DRILL_BLOCKS = 3  # differing blocks compared row by row
MASK = 2**64 - 1


@dataclass
class Side:
    rows: int = 0
    digest: int = 0
    blocks: dict[int, tuple[int, int]] = field(default_factory=dict)
    min_id: int | None = None
    max_id: int | None = None
    nulls: Counter[int] = field(default_factory=Counter)  # column slot -> NULL values

    def add(self, row_id: int, digest: int, values: Sequence[Any] = ()) -> None:
        if None in values:
            self.nulls.update(i for i, v in enumerate(values) if v is None)
        self.rows += 1
        self.digest = (self.digest + digest) & MASK
        b = row_id // BLOCK
        n, d = self.blocks.get(b, (0, 0))
        self.blocks[b] = (n + 1, (d + digest) & MASK)
        self.min_id = row_id if self.min_id is None else min(self.min_id, row_id)
        self.max_id = row_id if self.max_id is None else max(self.max_id, row_id)


@dataclass
class TableResult:
    target: str
    source: str
    sqlite_rows: int = 0
    rejected: int = 0
    not_migrated: int = 0  # SQLite rows after the ledger's last rowid
    expected: int = 0
    postgres_rows: int = 0
    checksum_ok: bool | None = None  # None: not computed (--counts-only)
    nulls: dict[str, tuple[int, int]] = field(default_factory=dict)  # column: (sqlite, pg)
    samples: int = 0
    sample_failures: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.problems and not self.sample_failures and not self.differences
                and self.expected == self.postgres_rows and self.checksum_ok is not False
                and all(a == b for a, b in self.nulls.values()))


@dataclass
class Result:
    tables: list[TableResult] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and all(t.ok for t in self.tables)


def column_types(pg: target.Connection, plan: TablePlan) -> list[int]:
    """Type oids of id + plan.copy_columns, for binary COPY."""
    cols = ["id", *plan.copy_columns]
    rows = pg.execute("SELECT attname, atttypid::integer FROM pg_attribute WHERE attrelid ="
                      " %s::regclass AND attname = ANY(%s)",
                      [f"public.{plan.target}", cols]).fetchall()
    types = dict(rows)
    return [types[c] for c in cols]


def _pg_rows(pg: target.Connection, plan: TablePlan, lo: int, hi: int,
             exclude_agents: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Rows (id, *copy_columns) with lo <= id <= hi, streamed by a binary COPY (much faster to
    read than a cursor: no per-fetch round trips, no text parsing)."""
    cols = sql.SQL(", ").join(map(sql.Identifier, ["id", *plan.copy_columns]))
    query = sql.SQL("SELECT {} FROM {} WHERE id BETWEEN {} AND {}").format(
        cols, target.ident(plan.target), sql.Literal(lo), sql.Literal(hi))
    if plan.target == "agents" and exclude_agents:
        query += sql.SQL(" AND agent_id <> ALL({})").format(sql.Literal(list(exclude_agents)))
    types = column_types(pg, plan)
    with pg.cursor() as cur, cur.copy(
            sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)) as copy:
        copy.set_types(types)
        yield from copy.rows()


class Validation:
    def __init__(self, source_path: Path, dsn: str, *, source_key: str | None = None,
                 samples: int = 20, counts_only: bool = False, progress: bool = True,
                 busy_timeout: float = 5.0, out: Callable[[str], None] = print,
                 seed: int | None = None) -> None:
        self.path = source_path
        self.dsn = dsn
        self.key = source_key or str(source_path.resolve())
        self.samples = samples
        self.counts_only = counts_only
        self.progress = progress
        self.busy_timeout = busy_timeout
        self.out = out
        self.random = random.Random(seed)

    def run(self) -> Result:
        started = time.monotonic()
        result = Result()
        with target.connect(self.dsn, "bgdb-validate-migration") as pg:
            # jsonb read in the same canonical form as the converter's check mode.
            set_json_loads(canonical_json_loads, context=pg)
            recorded = target.read_source(pg, self.key)
            if recorded is None:
                raise MigrationError(f"{self.key}: no migration of this source is recorded in"
                                     f" {target.describe_dsn(self.dsn)} (run bgdb-migrate-sqlite"
                                     " first, or pass the --source-key it used)")
            options = recorded["options"]
            prep = prepare_source(self.path, None, options["unmapped"],
                                  options["naive_timezone"], busy_timeout=self.busy_timeout,
                                  integrity_check=False, mapping_=options["mapping"])
            try:
                states = target.table_states(pg, self.key)
                result.placeholders = target.placeholder_agents(pg, self.key)
                if recorded["completed_at"] is None:
                    result.problems.append("the migration has not completed (rerun"
                                           " bgdb-migrate-sqlite to finish it)")
                for plan in prep.plans:
                    conv = RowConverter(plan, naive_tz=timezone(options["naive_timezone"]),
                                        migration_time=recorded["migration_time"],
                                        for_write=False)
                    result.tables.append(self._table(pg, prep.sqlite, plan, conv,
                                                     states.get(plan.target),
                                                     result.placeholders))
            finally:
                prep.sqlite.close()
        result.seconds = time.monotonic() - started
        return result

    # --------------------------------------------------------------------------------------------
    def _table(self, pg: target.Connection, lite: Any, plan: TablePlan, conv: RowConverter,
               state: dict[str, Any] | None, placeholders: list[str]) -> TableResult:
        tr = TableResult(plan.target, plan.source)
        if state is None:
            tr.problems.append("not migrated (no ledger entry)")
            tr.sqlite_rows = source.count(lite, self.path, plan)
            return tr
        rejected = target.issue_rowids(pg, self.key, plan.target, "rejected")
        last_rowid = int(state["last_rowid"])
        lite_side, pg_side = Side(), Side()
        total = source.count(lite, self.path, plan)
        bar = Progress(f"{plan.target:<20}", total * (1 if self.counts_only else 2),
                       enabled=self.progress and total > 0)
        unexplained = 0
        try:
            for rows in source.batches(lite, self.path, plan, 0, 10_000):
                for row in rows:
                    tr.sqlite_rows += 1
                    if row[0] in rejected:
                        tr.rejected += 1
                        continue
                    if row[0] > last_rowid:
                        tr.not_migrated += 1
                    c = conv.convert(row)
                    if c.reject is not None:
                        unexplained += 1  # would be rejected now, yet no issue records it
                        continue
                    row_id = c.values[conv.out_columns.index("id")]
                    lite_side.add(row_id, 0 if self.counts_only
                                  else conv.digest(c.values), c.values)
                bar.update(len(rows))
            tr.expected = lite_side.rows
            if lite_side.min_id is not None and lite_side.max_id is not None:
                for rec in _pg_rows(pg, plan, lite_side.min_id, lite_side.max_id, placeholders):
                    pg_side.add(rec[0], 0 if self.counts_only
                                else conv.digest(rec[1:]), rec[1:])
                    if pg_side.rows % 10_000 == 0:
                        bar.update(10_000)
            bar.update(pg_side.rows % 10_000)
        finally:
            bar.close()
        tr.postgres_rows = pg_side.rows
        tr.nulls = {conv.out_columns[i]: (lite_side.nulls[i], pg_side.nulls[i])
                    for i in sorted(set(lite_side.nulls) | set(pg_side.nulls))}
        if tr.not_migrated:
            tr.problems.append(f"{tr.not_migrated} SQLite row(s) added after the migration"
                               " (rerun bgdb-migrate-sqlite)")
        if unexplained:
            tr.problems.append(f"{unexplained} SQLite row(s) convert to a rejection that the"
                               " migration did not record")
        if not self.counts_only:
            tr.checksum_ok = lite_side.digest == pg_side.digest and lite_side.rows == pg_side.rows
            if not tr.checksum_ok:
                tr.differences = self._drill(pg, lite, plan, conv, lite_side, pg_side, rejected,
                                             placeholders)
        if self.samples and lite_side.rows:
            self._spot_check(pg, lite, plan, conv, rejected, tr)
        return tr

    def _drill(self, pg: target.Connection, lite: Any, plan: TablePlan, conv: RowConverter,
               a: Side, b: Side, rejected: set[int], placeholders: list[str]) -> list[str]:
        """Name the first differing ids, comparing the differing blocks row by row."""
        blocks = sorted(k for k in set(a.blocks) | set(b.blocks)
                        if a.blocks.get(k) != b.blocks.get(k))[:DRILL_BLOCKS]
        wanted = set(blocks)
        lite_rows: dict[int, list[str]] = {}
        for rows in source.batches(lite, self.path, plan, 0, 10_000):
            for row in rows:
                if row[0] in rejected:
                    continue
                c = conv.convert(row)
                if c.reject is None:
                    row_id = c.values[conv.out_columns.index("id")]
                    if row_id // BLOCK in wanted:
                        lite_rows[row_id] = conv.canonical_row(c.values)
        pg_rows: dict[int, list[str]] = {}
        for k in blocks:
            for rec in _pg_rows(pg, plan, k * BLOCK, (k + 1) * BLOCK - 1, placeholders):
                pg_rows[rec[0]] = conv.canonical_row(rec[1:])
        out = []
        missing = sorted(set(lite_rows) - set(pg_rows))
        extra = sorted(set(pg_rows) - set(lite_rows))
        changed = sorted(i for i in set(lite_rows) & set(pg_rows) if lite_rows[i] != pg_rows[i])
        if missing:
            out.append(f"missing in PostgreSQL: id {_ids(missing)}")
        if extra:
            out.append(f"only in PostgreSQL: id {_ids(extra)}")
        for i in changed[:5]:
            cols = [f"{col} (sqlite {x[:60]!r}, postgresql {y[:60]!r})"
                    for col, x, y in zip(conv.out_columns, lite_rows[i], pg_rows[i], strict=True)
                    if x != y]
            out.append(f"id {i} differs: {'; '.join(cols)}")
        if len(changed) > 5:
            out.append(f"... {len(changed) - 5} more differing rows")
        if len(blocks) < len({k for k in set(a.blocks) | set(b.blocks)
                              if a.blocks.get(k) != b.blocks.get(k)}):
            out.append("(only the first differing id blocks were compared row by row)")
        return out or ["checksums differ"]

    def _spot_check(self, pg: target.Connection, lite: Any, plan: TablePlan,
                    conv: RowConverter, rejected: set[int], tr: TableResult) -> None:
        bounds = source.rowid_range(lite, self.path, plan)
        if bounds is None:
            return
        picked: set[int] = set()
        for _ in range(self.samples * 3):
            if len(picked) >= self.samples:
                break
            rowid = source.rowid_at_or_after(lite, self.path, plan,
                                             self.random.randint(*bounds))
            if rowid is not None and rowid not in rejected:
                picked.add(rowid)
        rows = source.rows_at(lite, self.path, plan, sorted(picked))
        expected = {}
        for row in rows:
            c = conv.convert(row)
            if c.reject is None:
                expected[c.values[conv.out_columns.index("id")]] = (row[0], c.values)
        cols = sql.SQL(", ").join(map(sql.Identifier, ["id", *plan.copy_columns]))
        found = {r[0]: r[1:] for r in pg.execute(
            sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(cols,
                                                                 target.ident(plan.target)),
            [sorted(expected)]).fetchall()}
        for row_id, (rowid, values) in sorted(expected.items()):
            tr.samples += 1
            if row_id not in found:
                tr.sample_failures.append(f"rowid {rowid}: id {row_id} not in PostgreSQL")
                continue
            want, got = conv.canonical_row(values), conv.canonical_row(found[row_id])
            diff = [f"{col}: sqlite {x[:60]!r} != postgresql {y[:60]!r}"
                    for col, x, y in zip(conv.out_columns, want, got, strict=True) if x != y]
            if diff:
                tr.sample_failures.append(f"rowid {rowid} (id {row_id}): {'; '.join(diff)}")


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:10])) + (f" ... ({len(ids)} in all)" if len(ids) > 10 else "")


def render(result: Result) -> list[str]:
    lines = [f"{'table':<21}{'sqlite':>10}{'rejected':>10}{'expected':>10}{'postgresql':>12}"
             f"  {'checksum':<9}{'samples':<9}result"]
    for t in result.tables:
        checksum = "-" if t.checksum_ok is None else ("ok" if t.checksum_ok else "DIFFERS")
        samples = f"{t.samples - len(t.sample_failures)}/{t.samples}"
        lines.append(f"{t.target:<21}{t.sqlite_rows:>10}{t.rejected:>10}{t.expected:>10}"
                     f"{t.postgres_rows:>12}  {checksum:<9}{samples:<9}"
                     f"{'PASS' if t.ok else 'FAIL'}")
    for t in result.tables:
        if t.nulls:
            kept = ", ".join(f"{col} {a}" if a == b else f"{col} {a} in SQLite but {b} in"
                             " PostgreSQL" for col, (a, b) in t.nulls.items())
            lines.append(f"  {t.target}: NULL values kept: {kept}")
        for line in t.problems + t.differences + t.sample_failures[:5]:
            lines.append(f"  {t.target}: {line}")
    if result.placeholders:
        shown = ", ".join(result.placeholders[:10])
        more = " ..." if len(result.placeholders) > 10 else ""
        lines.append(f"placeholder agents created by the migration (not in SQLite, not"
                     f" counted above): {len(result.placeholders)}: {shown}{more}")
    for p in result.problems:
        lines.append(f"problem: {p}")
    failed = [t.target for t in result.tables if not t.ok]
    if result.ok:
        lines.append(f"PASS: {len(result.tables)} table(s) match ({result.seconds:.1f} s)")
    else:
        what = f"{len(failed)} of {len(result.tables)} table(s) differ: {', '.join(failed)}" \
            if failed else "; ".join(result.problems)
        lines.append(f"FAIL: {what}")
    return lines


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bgdb-validate-migration",
        description="Compare shared_state.db with PostgreSQL after bgdb-migrate-sqlite:"
                    " counts, content checksums, spot checks. Exit 1 on any mismatch.")
    ap.add_argument("--source", type=Path, default=Path("shared_state.db"))
    ap.add_argument("--target", default="postgresql",
                    help="'postgresql' (POSTGRESQL_* settings) or a connection string")
    ap.add_argument("--env-file", type=Path, help="read POSTGRESQL_* from this file")
    ap.add_argument("--source-key", help="the migration's --source-key, if it set one")
    ap.add_argument("--samples", type=int, default=20, help="spot-checked rows per table")
    ap.add_argument("--counts-only", action="store_true", help="skip the checksums")
    ap.add_argument("--busy-timeout", type=float, default=5.0)
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        dsn = target.resolve_target(args.target, args.env_file)
        result = Validation(args.source, dsn, source_key=args.source_key, samples=args.samples,
                            counts_only=args.counts_only, progress=args.progress,
                            busy_timeout=args.busy_timeout).run()
    except MigrationError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"error: PostgreSQL: {first}", file=sys.stderr)
        return 2
    for line in render(result):
        print(line)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
