"""bgdb.sqlite_migration.source on real SQLite files: the one-line messages for bad input, the
backup, and bounded batches in rowid order."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgdb.sqlite_migration import mapping, source
from bgdb.sqlite_migration.source import SourceError


def make_db(path: Path, rows: int = 2000) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE heartbeats (id INTEGER PRIMARY KEY, agent_id TEXT, ts TEXT)")
    conn.executemany("INSERT INTO heartbeats (agent_id, ts) VALUES (?, ?)",
                     [(f"agent-{i % 7}", f"2024-01-02 00:00:{i % 60:02d}") for i in range(rows)])
    conn.commit()
    conn.close()
    return path


def corrupt(path: Path, page: int = 3) -> Path:
    """Overwrite one b-tree page (not the header) with garbage."""
    with path.open("r+b") as f:
        f.seek(4096 * (page - 1))
        f.write(b"\xde\xad\xbe\xef" * 1024)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "shared_state.db")


def plan_for(path: Path) -> mapping.TablePlan:
    conn = source.open_readonly(path)
    try:
        res = mapping.resolve(mapping.effective_mapping(None), source.tables(conn, path))
    finally:
        conn.close()
    assert not res.errors, res.errors
    return res.plans[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"missing.db: no such file$"):
        source.check_file(tmp_path / "missing.db")


def test_empty_and_not_sqlite_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty.db: empty file, not a SQLite database"):
        source.check_file(empty)
    text = tmp_path / "notes.db"
    text.write_text("agent_id,timestamp\nagent-1,2024-01-01\n")
    with pytest.raises(SourceError, match=r"notes.db: not a SQLite 3 database"):
        source.check_file(text)
    with pytest.raises(SourceError, match=r"not a regular file"):
        source.check_file(tmp_path)


def test_corrupt_file_fails_the_integrity_check(db: Path) -> None:
    corrupt(db)
    source.check_file(db)  # the header is intact
    conn = source.open_readonly(db)
    try:
        with pytest.raises(SourceError, match=r"the database is corrupt \(") as err:
            source.integrity_check(conn, db)
    finally:
        conn.close()
    assert "\n" not in str(err.value)
    assert ".recover" in str(err.value)


def test_corrupt_page_found_while_streaming_is_a_clear_error(db: Path) -> None:
    plan = plan_for(db)
    corrupt(db, page=2)
    conn = source.open_readonly(db)
    try:
        with pytest.raises(SourceError, match=r"corrupt|not a database"):
            for _ in source.batches(conn, db, plan, 0, 100):
                pass
    finally:
        conn.close()


def test_locked_file(db: Path) -> None:
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(SourceError, match=r"locked by another process"):
            source.open_readonly(db, busy_timeout=0.1)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_readonly_connection_cannot_write(db: Path) -> None:
    conn = source.open_readonly(db)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM heartbeats")
    finally:
        conn.close()


def test_backup_is_timestamped_private_and_identical(db: Path, tmp_path: Path) -> None:
    first = source.backup(db, tmp_path / "backups")
    second = source.backup(db, tmp_path / "backups")
    assert first != second  # same second: a suffix keeps both
    assert first.name.startswith("shared_state.db.") and ".bak" in first.name
    assert first.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(first) as copy:
        assert copy.execute("SELECT count(*), max(ts) FROM heartbeats").fetchone() == (
            2000, "2024-01-02 00:00:59")
    assert not list((tmp_path / "backups").glob(".*tmp"))


def test_backup_of_a_corrupt_file_is_a_byte_copy(db: Path) -> None:
    corrupt(db, page=1)  # even the schema page
    dest = source.backup(db)
    assert dest.parent == db.parent
    assert dest.read_bytes() == db.read_bytes()


def test_batches_are_bounded_and_resume_after_a_rowid(db: Path) -> None:
    plan = plan_for(db)
    conn = source.open_readonly(db)
    try:
        sizes = [len(b) for b in source.batches(conn, db, plan, 0, 300)]
        assert sizes == [300] * 6 + [200]
        resumed: Iterator[list[tuple[object, ...]]] = source.batches(conn, db, plan, 1500, 300)
        rows = [r for b in resumed for r in b]
        assert [r[0] for r in rows] == list(range(1501, 2001))
        assert source.count(conn, db, plan, 1500) == 500
        assert source.rowid_range(conn, db, plan) == (1, 2000)
        assert source.rowid_at_or_after(conn, db, plan, 2001) is None
    finally:
        conn.close()


def test_rowid_alias_avoids_a_column_named_rowid() -> None:
    assert mapping._rowid_alias(("rowid", "x")) == "_rowid_"
    assert mapping._rowid_alias(("id",)) == "rowid"


def test_a_file_with_no_table_to_migrate_is_bad_input(tmp_path: Path) -> None:
    from bgdb.sqlite_migration import MigrationError, migrate
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY)")
    with pytest.raises(MigrationError, match=r"other.db: no table to migrate \(its tables:"
                                             r" tasks\)") as err:
        migrate.prepare_source(path, None, "error", "UTC")
    assert err.value.exit_code == 2
