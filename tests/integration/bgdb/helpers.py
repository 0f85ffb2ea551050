"""Helpers for the schema/migration tests (the fixture is in conftest.py).

Roles are cluster-wide and may already exist (the deployed sandbox has them, with passwords):
these tests never alter or drop a role, never set a password, and act as the agents' roles
through SET ROLE from the superuser session (privileges are checked against the current role,
and no pg_hba rule or password is needed).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bgdb import migrate

REPO_SQL = Path(__file__).resolve().parents[3] / "sql"
APP = migrate.DEFAULT_APP_USER
OWNER = migrate.DEFAULT_OWNER
READONLY = "bg_agents_readonly"
MONITOR = "bg_agents_monitor"
OPS = "bg_agents_ops"


def copy_sql(tmp_path: Path) -> Path:
    """A copy of sql/migrations and sql/roles.sql that a test may add to or tamper with."""
    dest = tmp_path / "sql"
    shutil.copytree(REPO_SQL / "migrations", dest / "migrations")
    shutil.copy(REPO_SQL / "roles.sql", dest / "roles.sql")
    return dest / "migrations"


def apply(dsn: str, directory: Path = migrate.DEFAULT_DIR) -> migrate.ApplyResult:
    with migrate.connect(dsn) as conn:
        return migrate.apply(conn, directory, app_user=APP)


@contextmanager
def as_role(dsn: str, role: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit session in dsn's database acting as `role` (SET ROLE, no login)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        yield conn
