"""Settings on a real lab: the issue's hostile inputs, run as a user would (`pyinfra -y
inventory.py deploy.py`), change nothing on the primary; a non-ASCII password logs in directly
and through PgBouncer (SASLprep, deploy/saslprep.py)."""

from __future__ import annotations

import json
import shlex
import subprocess
import unicodedata
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from deploy import scram, secrets
from deploy.pgsql import literal
from tests.sandbox_fixtures import Deployed

APP_DB, APP_USER = "background_agents", "bg_agents_user"
CONFIG = ("/etc/postgresql /etc/pgbouncer /etc/bgdb /etc/pgbackrest "
          "/etc/sysctl.d/60-bgdb-postgresql.conf")
HOSTILE: list[dict[str, Any]] = [
    {"postgres_alowed_cidrs": ["10.231.0.0/24"]},
    {"pgbouncer_pool_sise": 20},
    {"postgres_allowed_cidrs": ["0.0.0.0/0"]},
    {"postgres_overrides": {"ssl": "off"}},
    {"postgres_overrides": {"listen_addresses": "*"}},
    {"postgres_overrides": {"log_connections": "on\npgaudit.log = none"}},
    {"postgres_overrides": {"work_mem": "16 parsecs"}},
]


def on_primary(deployed: Deployed, command: str) -> str:
    out = subprocess.run(["ssh", "-F", str(deployed.ssh_config()), deployed.primary.address,
                          command], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{command}: {out.stderr}"
    return out.stdout.strip()


def psql(deployed: Deployed, query: str, db: str = APP_DB) -> str:
    return on_primary(deployed, f"runuser -u postgres -- psql -XAtq -d {db} -c "
                                f"{shlex.quote(query)}")


def state(deployed: Deployed) -> str:
    """Checksums of every configuration file the bundle writes, and when PostgreSQL last
    started and read its configuration (a restart or reload would move them)."""
    sums = on_primary(deployed, f"find {CONFIG} -type f 2>/dev/null | sort | xargs sha256sum")
    times = psql(deployed, "SELECT pg_postmaster_start_time(), pg_conf_load_time()")
    return f"{sums}\n{times}"


def test_hostile_inputs_change_nothing_on_the_primary(deployed: Deployed) -> None:
    before = state(deployed)
    assert "pg_hba.conf" in before and "pgbouncer.ini" in before
    for extra in HOSTILE:
        result = deployed.deploy(json.dumps(extra))
        errors = [line for line in result.output.splitlines()
                  if line.startswith("settings error: ")]
        assert result.returncode == 2, f"{extra} was not refused:\n{result.output[-2000:]}"
        assert len(errors) == 1 and "(from BGDB_EXTRA_DATA): " in errors[0], result.output
        assert errors[0].startswith(f"settings error: {next(iter(extra))}"), errors[0]
        assert "Connecting to hosts" not in result.output
    assert state(deployed) == before


@pytest.fixture
def app_verifier(deployed: Deployed) -> Iterator[str]:
    """The application role's stored verifier, put back after the test."""
    stored = psql(deployed, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{APP_USER}'")
    assert stored.startswith("SCRAM-SHA-256$")
    yield stored
    psql(deployed, f"ALTER ROLE {APP_USER} PASSWORD {literal(stored)}")
    assert scram.matches(secrets.password(APP_USER, env="POSTGRESQL_PASSWORD"), stored)


def login(deployed: Deployed, password: str, port: int) -> str:
    conninfo = psycopg.conninfo.make_conninfo(
        host=deployed.primary.address, port=str(port), dbname=APP_DB, user=APP_USER,
        password=password, sslmode="verify-full",
        sslrootcert=str(secrets.secrets_dir() / "ca/ca.crt"), connect_timeout="10")
    with psycopg.connect(conninfo, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    return str(row[0]) if row else ""


def set_app_password(deployed: Deployed, password: str) -> None:
    """What the deploy runs when a password changes (deploy/pgsql.py: role_password), then
    PgBouncer's pooled server connections closed, so that it logs in anew with the new keys
    (SCRAM pass-through of the client's proof)."""
    psql(deployed, f"ALTER ROLE {APP_USER} PASSWORD {literal(scram.verifier(password))}")
    psql(deployed, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                   f"WHERE usename = '{APP_USER}' AND client_addr IS NULL")


def test_a_non_ascii_password_logs_in_directly_and_through_pgbouncer(
        deployed: Deployed, app_verifier: str) -> None:
    # NO-BREAK SPACE becomes a space, ROMAN NUMERAL NINE "IX", fullwidth letters ASCII, and
    # any normal form the same: the verifier hashes what libpq sends after the same SASLprep.
    password = "P\u00e4ssw\u00f6rd\u00a0\u2168 \uff21\uff22 \u20ac\u00df"
    set_app_password(deployed, password)
    for port in (5432, 6432):
        assert login(deployed, password, port) == APP_USER
        assert login(deployed, unicodedata.normalize("NFD", password), port) == APP_USER
        assert login(deployed, "P\u00e4ssw\u00f6rd IX AB \u20ac\u00df", port) == APP_USER
        with pytest.raises(psycopg.OperationalError, match="authentication failed"):
            login(deployed, password.replace("\u2168", "X"), port)
    # A character unassigned in Unicode 3.2 (an emoji): SASLprep does not apply, PostgreSQL and
    # libpq hash the raw bytes, so exactly these bytes log in.
    rocket = "r\u00f6cket \U0001f680"
    set_app_password(deployed, rocket)
    for port in (5432, 6432):
        assert login(deployed, rocket, port) == APP_USER
        with pytest.raises(psycopg.OperationalError, match="authentication failed"):
            login(deployed, unicodedata.normalize("NFD", rocket), port)
