"""The SQLite side: checks, a timestamped backup, introspection, rows streamed by rowid.

The file is opened read-only (`file:...?mode=ro`): the migration can never change it. Rows are
read in rowid order, one bounded batch per query (`WHERE rowid > ? ORDER BY rowid LIMIT ?`, a
b-tree range scan), so memory does not grow with the table and a later run resumes after the
last rowid it migrated. Each query is its own short read transaction: agents still writing to
the file are not blocked for the whole migration (rows they append are picked up by a rerun).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bgdb.sqlite_migration import MigrationError
from bgdb.sqlite_migration.convert import InvalidText
from bgdb.sqlite_migration.mapping import SourceTable, TablePlan

HEADER = b"SQLite format 3\x00"
_WITHOUT_ROWID = re.compile(r"\bWITHOUT\s+ROWID\b", re.IGNORECASE)


class SourceError(MigrationError):
    """The SQLite file is missing, not SQLite, locked or corrupt (one line, names the file)."""


def describe(path: Path, exc: sqlite3.Error) -> SourceError:
    """A one-line message for a SQLite error on `path`."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return SourceError(f"{path}: the database is locked by another process (an agent still"
                           " writing?); stop the writers or retry (--busy-timeout)")
    if "malformed" in low or "corrupt" in low:
        return SourceError(f"{path}: the database is corrupt ({text}); recover it first, e.g."
                           f" `sqlite3 {path} .recover | sqlite3 recovered.db`")
    if "not a database" in low or "encrypted" in low:
        return SourceError(f"{path}: not a SQLite database ({text})")
    if "unable to open" in low:
        return SourceError(f"{path}: cannot open the database ({text})")
    return SourceError(f"{path}: SQLite error: {text}")


def check_file(path: Path) -> None:
    """Fail early, with one line, on what is not a readable SQLite 3 file."""
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file")
    try:
        with path.open("rb") as f:
            header = f.read(len(HEADER))
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not header:
        raise SourceError(f"{path}: empty file, not a SQLite database")
    if header != HEADER:
        raise SourceError(f"{path}: not a SQLite 3 database (the file does not start with"
                          " the SQLite header)")


def _text_factory(data: bytes) -> Any:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidText(data)


def open_readonly(path: Path, busy_timeout: float = 5.0) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None,
                               check_same_thread=False)
        conn.text_factory = _text_factory  # invalid UTF-8 becomes an issue, not a crash
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise describe(path, exc) from exc
    return conn


def integrity_check(conn: sqlite3.Connection, path: Path) -> None:
    """PRAGMA quick_check: every page readable and well-formed (O(size), no index cross-check)."""
    try:
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.Error as exc:
        raise describe(path, exc) from exc
    problems = [" ".join(str(r[0]).split()) for r in rows if r and r[0] != "ok"]
    if problems:
        raise SourceError(f"{path}: the database is corrupt (quick_check: "
                          f"{'; '.join(problems)[:300]}); recover it first, e.g."
                          f" `sqlite3 {path} .recover | sqlite3 recovered.db`")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def tables(conn: sqlite3.Connection, path: Path) -> list[SourceTable]:
    try:
        rows = conn.execute("SELECT name, coalesce(sql, '') FROM sqlite_master"
                            " WHERE type = 'table' ORDER BY name").fetchall()
        out = []
        for name, ddl in rows:
            info = conn.execute(f"PRAGMA table_info({quote(name)})").fetchall()
            out.append(SourceTable(name=name, columns=tuple(r[1] for r in info),
                                   declared=tuple(r[2] or "" for r in info),
                                   without_rowid=bool(_WITHOUT_ROWID.search(ddl))))
    except sqlite3.Error as exc:
        raise describe(path, exc) from exc
    return out


def backup_path(path: Path, directory: Path | None, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = (directory or path.parent) / f"{path.name}.{stamp}.bak"
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}.{n}")
        n += 1
    return candidate


def backup(path: Path, directory: Path | None = None, busy_timeout: float = 5.0) -> Path:
    """Copy the database to <dir>/<name>.<UTC timestamp>.bak (mode 0600) and return its path.

    SQLite's online backup API copies a consistent snapshot page by page, even while agents
    write (it holds a read lock for the copy); a file whose pages it cannot read is copied
    byte for byte instead (with its -wal), so even a corrupt file is kept as it was."""
    dest = backup_path(path, directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        try:
            src = open_readonly(path, busy_timeout)
            try:
                dst = sqlite3.connect(tmp)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
        except (sqlite3.Error, SourceError) as exc:
            if "locked" in str(exc).lower():
                raise describe(path, sqlite3.OperationalError("database is locked")) from exc
            shutil.copyfile(path, tmp)
            wal = Path(f"{path}-wal")
            if wal.exists():
                shutil.copyfile(wal, Path(f"{dest}-wal"))
        tmp.replace(dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"cannot write the backup {dest}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def count(conn: sqlite3.Connection, path: Path, plan: TablePlan, after: int = 0) -> int:
    alias = plan.rowid_alias
    try:
        row = conn.execute(f"SELECT count(*) FROM {quote(plan.source)} WHERE {alias} > ?",
                           [after]).fetchone()
    except sqlite3.Error as exc:
        raise describe(path, exc) from exc
    return int(row[0])


def rowid_range(conn: sqlite3.Connection, path: Path, plan: TablePlan) -> tuple[int, int] | None:
    alias = plan.rowid_alias
    try:
        row = conn.execute(f"SELECT min({alias}), max({alias}) FROM {quote(plan.source)}"
                           ).fetchone()
    except sqlite3.Error as exc:
        raise describe(path, exc) from exc
    return None if row[0] is None else (int(row[0]), int(row[1]))


def select_sql(plan: TablePlan) -> str:
    cols = ", ".join([plan.rowid_alias, *(quote(c) for c in plan.source_columns)])
    return f"SELECT {cols} FROM {quote(plan.source)}"


def batches(conn: sqlite3.Connection, path: Path, plan: TablePlan, after: int,
            size: int) -> Iterator[list[tuple[Any, ...]]]:
    """Lists of at most `size` rows (rowid first) with rowid > after, in rowid order."""
    query = f"{select_sql(plan)} WHERE {plan.rowid_alias} > ? ORDER BY {plan.rowid_alias} LIMIT ?"
    last = after
    while True:
        try:
            rows = conn.execute(query, [last, size]).fetchall()
        except sqlite3.Error as exc:
            raise describe(path, exc) from exc
        if not rows:
            return
        yield rows
        last = rows[-1][0]
        if len(rows) < size:
            return


def rows_at(conn: sqlite3.Connection, path: Path, plan: TablePlan,
            rowids: list[int]) -> list[tuple[Any, ...]]:
    if not rowids:
        return []
    marks = ", ".join("?" for _ in rowids)
    try:
        return conn.execute(f"{select_sql(plan)} WHERE {plan.rowid_alias} IN ({marks})"
                            f" ORDER BY {plan.rowid_alias}", rowids).fetchall()
    except sqlite3.Error as exc:
        raise describe(path, exc) from exc


def rowid_at_or_after(conn: sqlite3.Connection, path: Path, plan: TablePlan,
                      value: int) -> int | None:
    alias = plan.rowid_alias
    try:
        row = conn.execute(f"SELECT {alias} FROM {quote(plan.source)} WHERE {alias} >= ?"
                           f" ORDER BY {alias} LIMIT 1", [value]).fetchone()
    except sqlite3.Error as exc:
        raise describe(path, exc) from exc
    return None if row is None else int(row[0])
