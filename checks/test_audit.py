"""Audit logging with pgaudit (CIS PostgreSQL 3.2): preloaded with the classes the deploy set on
every database host, and proven to write AUDIT lines on the primary (a replica is read-only, so
the probe's DDL cannot run there)."""

from __future__ import annotations

import secrets
import shlex
import time

import pytest

from bgdb.remote import Target
from deploy.settings import PGAUDIT_REQUIRED, pgaudit_included

LOG_WAIT_SECONDS = 3.0  # the logging collector, when on, writes asynchronously


def _skip_unless_enabled(t: Target) -> None:
    if not t.pg.pgaudit:
        pytest.skip("audit logging turned off in the settings (postgres_pgaudit = False)")


def test_pgaudit_loaded(db: Target) -> None:
    """pgaudit is preloaded and logs DDL and role changes, parameters off (CIS 3.2)"""
    _skip_unless_enabled(db)
    libs = db.setting("shared_preload_libraries")
    assert "pgaudit" in [lib.strip() for lib in libs.split(",")], \
        f"pgaudit is not in shared_preload_libraries ('{libs}'): nothing is audit-logged"
    log = db.setting("pgaudit.log")
    wanted = ", ".join(db.pg.pgaudit_log)
    missing = sorted(PGAUDIT_REQUIRED - pgaudit_included(log.split(",")))
    assert not missing, (f"pgaudit.log = '{log}': {', '.join(missing)} statements are not "
                         f"audited (deploy asked for '{wanted}')")
    assert pgaudit_included(log.split(",")) == pgaudit_included(db.pg.pgaudit_log), \
        f"pgaudit.log = '{log}', deploy asked for '{wanted}'"
    for name, want in (("pgaudit.log_parameter", db.pg.pgaudit_log_parameter),
                       ("pgaudit.log_relation", db.pg.pgaudit_log_relation)):
        got = db.setting(name)
        assert got == ("on" if want else "off"), \
            f"{name} = {got}, deploy asked for {'on' if want else 'off'}"
    assert db.value("SELECT count(*) FROM pg_extension WHERE extname = 'pgaudit'") == "1", \
        f"extension pgaudit missing in {db.app.database}: DDL lines lack object type and name"


def postgres_log(t: Target) -> str:
    """The file PostgreSQL's messages go to: the logging collector's current file, else the one
    Debian's pg_ctlcluster sends stderr to."""
    if t.setting("logging_collector") == "on":
        current = t.value("SELECT pg_current_logfile()")
        if current and not current.startswith("/"):
            current = f"{t.setting('data_directory')}/{current}"
        return current
    return f"/var/log/postgresql/postgresql-{t.pg.version}-{t.pg.cluster}.log"


def test_pgaudit_writes_audit_lines(primary: Target) -> None:
    """A role change and a DDL statement appear as AUDIT lines in the PostgreSQL log (CIS 3.2)"""
    _skip_unless_enabled(primary)
    probe = f"bgdb_audit_probe_{secrets.token_hex(4)}"
    log = postgres_log(primary)
    assert log and primary.host.file(log).exists, \
        f"PostgreSQL log '{log}' not found: cannot see what pgaudit writes"
    try:
        primary.sql(f"CREATE ROLE {probe} NOLOGIN")
        primary.sql(f"CREATE TEMPORARY TABLE {probe} (id int)")  # gone with the session
    finally:
        primary.sql(f"DROP ROLE IF EXISTS {probe}")
    expected = {"ROLE,CREATE ROLE": False, "DDL,CREATE TABLE": False}
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        # The probe's name is random: only this run's lines can match.
        out = primary.host.run(f"tail -c 2000000 {shlex.quote(log)} | grep -aF {probe}").stdout
        lines = [line for line in out.splitlines() if "AUDIT: SESSION," in line]
        for kind in expected:
            expected[kind] = any(f",{kind}," in line for line in lines)
        if all(expected.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    missing = [kind.split(",")[1] for kind, seen in expected.items() if not seen]
    assert not missing, (f"no AUDIT line for {' and '.join(missing)} {probe} in {log} within "
                         f"{LOG_WAIT_SECONDS:.0f} s (pgaudit.log = "
                         f"'{primary.setting('pgaudit.log')}')")
