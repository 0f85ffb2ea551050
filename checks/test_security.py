"""The security section of `bgdb check`: the CIS PostgreSQL Benchmark controls the bundle covers,
each from the live host (SQL and file state). The controls left to the environment are listed in
checks/cis.py and printed as not applicable by the report."""

from __future__ import annotations

import shlex

from bgdb.remote import Target


def _mode_owner(t: Target, path: str) -> tuple[str, str]:
    out = t.host.run(f"stat -c '%a %U' {shlex.quote(path)}")
    assert out.rc == 0, f"{path}: {out.stderr.strip()}"
    mode, owner = out.stdout.split()
    return mode.zfill(4), owner


def test_cis_3_1_3_logging_collector(db: Target) -> None:
    """CIS 3.1.3-3.1.9: logging collector on, 0600 files in the cluster's log directory, rotated"""
    assert db.setting("logging_collector") == "on", \
        "logging_collector = off: the log has no file mode or rotation of its own (CIS 3.1.3)"
    mode = db.setting("log_file_mode")
    assert mode == "0600", f"log_file_mode = {mode}, expected 0600 (CIS 3.1.5)"
    directory = db.setting("log_directory")
    data = db.setting("data_directory")
    assert not directory.startswith("/") or directory.startswith(f"{data}/"), \
        f"log_directory = {directory}: outside the cluster's data directory {data}"
    age = db.setting("log_rotation_age")
    assert age not in ("0", "-1"), f"log_rotation_age = {age}: the log is never rotated (CIS 3.1.8)"
    current = db.value("SELECT pg_current_logfile()")
    assert current, "pg_current_logfile() is empty: the collector writes no file"
    path = current if current.startswith("/") else f"{data}/{current}"
    got, owner = _mode_owner(db, path)
    assert (got, owner) == ("0600", "postgres"), \
        f"{path} is mode {got} owned by {owner}, expected 0600 postgres (CIS 3.1.5)"


def test_cis_3_1_22_log_error_verbosity(db: Target) -> None:
    """CIS 3.1.22: log_error_verbosity verbose (SQLSTATE and source location logged)"""
    got = db.setting("log_error_verbosity")
    assert got == "verbose", f"log_error_verbosity = {got}, expected verbose (CIS 3.1.22)"


def test_cis_7_2_log_replication_commands(db: Target) -> None:
    """CIS 7.2: replication commands (slots, base backups) are logged"""
    got = db.setting("log_replication_commands")
    assert got == "on", f"log_replication_commands = {got}: replication commands unlogged (CIS 7.2)"
