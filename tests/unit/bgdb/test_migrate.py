"""bgdb.migrate without a database: file discovery, ordering, checksums, naming, drift."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from bgdb import migrate
from bgdb.migrate import Applied, DriftError, MigrationError, NamingError


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("0001_core_tables.sql", (1, "core_tables")),
        ("0012_add_index_2.sql", (12, "add_index_2")),
        ("9999_x.sql", (9999, "x")),
    ],
)
def test_parse_name_accepts_nnnn_name(filename: str, expected: tuple[int, str]) -> None:
    assert migrate.parse_name(filename) == expected


@pytest.mark.parametrize(
    "filename",
    [
        "1_init.sql",          # not 4 digits
        "00001_init.sql",      # 5 digits
        "0001-init.sql",       # dash
        "0001_Init.sql",       # uppercase
        "0001_.sql",           # no name
        "0001_in it.sql",      # space
        "init.sql",            # no version
        "0000_init.sql",       # version 0
    ],
)
def test_parse_name_rejects_other_names(filename: str) -> None:
    with pytest.raises(NamingError, match=re.escape(filename)) as err:
        migrate.parse_name(filename)
    assert err.value.exit_code == 2


def test_discover_orders_by_version_and_ignores_non_sql(tmp_path: Path) -> None:
    d = write(tmp_path / "m", {
        "0010_ten.sql": "SELECT 10;",
        "0002_two.sql": "SELECT 2;",
        "0001_one.sql": "SELECT 1;",
        "README.md": "not a migration",
        "0003_three.sql.orig": "editor leftover",
    })
    found = migrate.discover(d)
    assert [(m.version, m.name, m.filename) for m in found] == [
        (1, "one", "0001_one.sql"), (2, "two", "0002_two.sql"), (10, "ten", "0010_ten.sql")]
    assert found[2].text == "SELECT 10;"


def test_discover_names_a_badly_named_file(tmp_path: Path) -> None:
    d = write(tmp_path / "m", {"0001_one.sql": "", "2_two.sql": ""})
    with pytest.raises(NamingError, match="2_two.sql"):
        migrate.discover(d)


def test_discover_rejects_duplicate_versions_naming_both(tmp_path: Path) -> None:
    d = write(tmp_path / "m", {"0001_one.sql": "", "0001_uno.sql": ""})
    with pytest.raises(NamingError, match=r"0001_uno\.sql.*0001_one\.sql"):
        migrate.discover(d)


def test_discover_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="not a directory"):
        migrate.discover(tmp_path / "absent")


def test_checksum_is_sha256_of_the_exact_bytes(tmp_path: Path) -> None:
    d = write(tmp_path / "m", {"0001_one.sql": "SELECT 1;\n"})
    (m,) = migrate.discover(d)
    assert m.checksum == hashlib.sha256(b"SELECT 1;\n").hexdigest()
    # Whitespace counts: an applied file must not change at all.
    (d / "0001_one.sql").write_text("SELECT 1; \n")
    (m2,) = migrate.discover(d)
    assert m2.checksum != m.checksum


def migrations(tmp_path: Path) -> list[migrate.Migration]:
    return migrate.discover(write(tmp_path / "m", {
        "0001_one.sql": "SELECT 1;", "0002_two.sql": "SELECT 2;", "0003_three.sql": "SELECT 3;"}))


def test_compare_pending_are_the_unapplied_in_order(tmp_path: Path) -> None:
    ms = migrations(tmp_path)
    plan = migrate.compare(ms, [Applied(1, "one", ms[0].checksum)])
    assert [m.filename for m in plan.pending] == ["0002_two.sql", "0003_three.sql"]
    assert plan.drift == []
    plan.raise_for_drift()  # nothing to raise


def test_compare_nothing_pending_when_all_applied(tmp_path: Path) -> None:
    ms = migrations(tmp_path)
    plan = migrate.compare(ms, [Applied(m.version, m.name, m.checksum) for m in ms])
    assert plan.pending == []
    assert plan.drift == []


def test_compare_changed_file_is_drift_naming_the_file(tmp_path: Path) -> None:
    ms = migrations(tmp_path)
    applied = [Applied(1, "one", ms[0].checksum), Applied(2, "two", "0" * 64)]
    plan = migrate.compare(ms, applied)
    assert [m.filename for m in plan.changed] == ["0002_two.sql"]
    with pytest.raises(DriftError, match=r"0002_two\.sql: changed") as err:
        plan.raise_for_drift()
    assert err.value.exit_code == 2


def test_a_corrected_file_accepts_only_the_checksums_it_declares(tmp_path: Path) -> None:
    old = hashlib.sha256(b"SELECT 2;").hexdigest()
    d = write(tmp_path / "m", {"0001_one.sql": "SELECT 1;",
                               "0002_two.sql": f"-- accepts-checksum: {old}\nSELECT 2 AS two;"})
    ms = migrate.discover(d)
    assert ms[1].accepted == {ms[1].checksum, old}
    # A database that applied the old text is in step; any other checksum is still drift.
    assert migrate.compare(ms, [Applied(1, "one", ms[0].checksum),
                                Applied(2, "two", old)]).drift == []
    assert [m.filename for m in migrate.compare(
        ms, [Applied(2, "two", "0" * 64)]).changed] == ["0002_two.sql"]


def test_shipped_0002_accepts_its_first_release() -> None:
    (m,) = [m for m in migrate.discover(migrate.DEFAULT_DIR) if m.version == 2]
    first_release = "cea17ceaf86c22e3284be39054d050df30c8a80bc0647012248c08aa123b7c47"
    assert m.accepted == {m.checksum, first_release}


def test_compare_applied_file_missing_is_drift(tmp_path: Path) -> None:
    ms = migrations(tmp_path)
    applied = [Applied(m.version, m.name, m.checksum) for m in ms] + [Applied(4, "four", "x")]
    plan = migrate.compare(ms, applied)
    assert plan.drift == ["0004_four.sql: applied but missing from the directory"]


def test_repository_migrations_are_well_formed() -> None:
    found = migrate.discover(migrate.DEFAULT_DIR)
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    for m in found:
        # Each file runs inside the runner's transaction: no transaction control of its own, and
        # nothing that refuses to run in a transaction block.
        code = "\n".join(line.split("--")[0] for line in m.text.splitlines()).upper()
        assert not re.search(r"^\s*(BEGIN|COMMIT|ROLLBACK)\s*;", code, re.M), m.filename
        assert "CONCURRENTLY" not in code, m.filename


def test_cli_modes_are_exclusive() -> None:
    with pytest.raises(SystemExit) as exc:
        migrate.main(["--dry-run", "--status"])
    assert exc.value.code == 2
