"""The migration runner against a real PostgreSQL: apply, re-apply, drift, failures, races."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from bgdb import migrate
from tests.integration.bgdb.helpers import APP, OWNER, apply, copy_sql

REPO_FILES = [m.filename for m in migrate.discover(migrate.DEFAULT_DIR)]


def history(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()


def test_cli_applies_all_then_nothing(scratch_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate.main(["--dsn", scratch_dsn, "--app-user", APP]) == 0
    first = capsys.readouterr().out.splitlines()
    assert [line for line in first if line.startswith("applied 0")] == [
        f"applied {f}" for f in REPO_FILES]
    assert first[-1] == f"applied {len(REPO_FILES)} migration(s)"

    assert migrate.main(["--dsn", scratch_dsn, "--app-user", APP]) == 0
    assert capsys.readouterr().out.splitlines() == ["up to date"]
    assert [v for v, _ in history(scratch_dsn)] == list(range(1, len(REPO_FILES) + 1))


def test_second_apply_changes_nothing(scratch_dsn: str) -> None:
    first = apply(scratch_dsn)
    assert [m.filename for m in first.applied] == REPO_FILES
    second = apply(scratch_dsn)
    assert second.applied == []
    assert second.role_changes == []
    assert not second.changed


def test_tampered_file_fails_naming_it_and_applies_nothing(
    scratch_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = copy_sql(tmp_path)
    apply(scratch_dsn, directory)
    tampered = directory / "0002_partition_management.sql"
    tampered.write_text(tampered.read_text() + "\n-- an innocent-looking edit\n")
    (directory / "0099_later.sql").write_text("CREATE TABLE later (id bigint);")

    rc = migrate.main(["--dsn", scratch_dsn, "--dir", str(directory), "--app-user", APP])
    err = capsys.readouterr().err
    assert rc == 2
    assert "0002_partition_management.sql" in err and "changed" in err
    assert 99 not in [v for v, _ in history(scratch_dsn)]  # drift is checked before any change

    assert migrate.main(["--dsn", scratch_dsn, "--dir", str(directory), "--status"]) == 2
    status = capsys.readouterr().out
    assert "0002_partition_management.sql  CHANGED" in status
    assert "0099_later.sql" in status and "pending" in status


def test_dry_run_changes_nothing(scratch_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate.main(["--dsn", scratch_dsn, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"would apply {f}" for f in REPO_FILES] + [
        f"{len(REPO_FILES)} migration(s) pending"]
    with psycopg.connect(scratch_dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")
        assert row.fetchone() == (0,)


def test_later_migration_is_applied_alone(scratch_dsn: str, tmp_path: Path) -> None:
    directory = copy_sql(tmp_path)
    apply(scratch_dsn, directory)
    (directory / "0099_notes.sql").write_text("CREATE TABLE notes (id bigint PRIMARY KEY);")
    result = apply(scratch_dsn, directory)
    assert [m.filename for m in result.applied] == ["0099_notes.sql"]
    assert history(scratch_dsn)[-1] == (99, "notes")


def test_failing_migration_rolls_back_and_names_the_file(
    scratch_dsn: str, tmp_path: Path
) -> None:
    directory = copy_sql(tmp_path)
    (directory / "0099_broken.sql").write_text(
        "CREATE TABLE half_done (id bigint);\nSELECT 1 / 0;\n")
    with pytest.raises(migrate.MigrationError, match=r"0099_broken\.sql: division by zero"):
        apply(scratch_dsn, directory)
    with psycopg.connect(scratch_dsn) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
    assert [v for v, _ in history(scratch_dsn)] == [  # the earlier ones stay applied
        migrate.parse_name(f)[0] for f in REPO_FILES]


def test_objects_are_owned_by_the_owner_role(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace"
            " UNION SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc"
            " WHERE pronamespace = 'public'::regnamespace"
        ).fetchall()
    assert owners == [(OWNER,)]


def test_two_runners_at_once_apply_each_migration_once(scratch_dsn: str) -> None:
    results: list[migrate.ApplyResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            results.append(apply(scratch_dsn))
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    applied = sorted(m.filename for r in results for m in r.applied)
    assert applied == REPO_FILES
    assert len(history(scratch_dsn)) == len(REPO_FILES)


def test_extra_connect_roles_get_connect_only_if_they_exist(scratch_dsn: str) -> None:
    # pg_monitor stands in for e.g. PgBouncer's auth role: it exists in every cluster and has no
    # CONNECT here once PUBLIC lost it. An unknown name is skipped, not an error.
    with migrate.connect(scratch_dsn) as conn:
        migrate.apply(conn, app_user=APP, connect_roles=["pg_monitor", "bgdb_no_such_role"])
        row = conn.execute(
            "SELECT has_database_privilege('pg_monitor', current_database(), 'CONNECT'),"
            " has_database_privilege('public', current_database(), 'CONNECT')").fetchone()
    assert row == (True, False)
