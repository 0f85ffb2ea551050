"""PgBouncer on real sandbox hosts: TLS and SCRAM through port 6432, pooling under 500 clients,
the monitor's console, reload without dropping clients, idempotency. Tests that change settings
restore them at the end of their own test."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from background_agents.config import AdapterConfig
from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter
from deploy import secrets
from deploy.settings import write_pool_size
from tests.sandbox_fixtures import Deployed, admin_dsn

PORT = 6432
APP_DB = "background_agents"
APP_USER = "bg_agents_user"
MONITOR = "bg_agents_monitor"
RESERVE = 5  # pgbouncer_reserve_pool_size's default
# The default server pool: half of max_db_connections (half of the oltp max_connections 300),
# less the reserve, at least POSTGRESQL_POOL_SIZE (10).
MAX_DB = 300 // 2
POOL = write_pool_size(10, MAX_DB, RESERVE)
CA = str(secrets.secrets_dir() / "ca/ca.crt")
REPO = Path(__file__).resolve().parents[3]


def ssh(deployed: Deployed, host: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(deployed.ssh_config()), host, command],
                          capture_output=True, text=True, timeout=60)


def on_primary(deployed: Deployed, command: str) -> str:
    out = ssh(deployed, deployed.primary.address, command)
    assert out.returncode == 0, f"{command}: {out.stderr}"
    return out.stdout.strip()


def psql(deployed: Deployed, sql: str, db: str = APP_DB) -> str:
    return on_primary(deployed, f"runuser -u postgres -- psql -XAtq -d {db} -c \"{sql}\"")


def dsn(deployed: Deployed, user: str = APP_USER, dbname: str = APP_DB, **overrides: str) -> str:
    params = dict(host=deployed.primary.address, port=str(PORT), dbname=dbname, user=user,
                  password=secrets.password(user), sslmode="verify-full", sslrootcert=CA,
                  connect_timeout="10")
    params.update(overrides)
    return psycopg.conninfo.make_conninfo(**params)


def connect(conninfo: str) -> psycopg.Connection[tuple[object, ...]]:
    # Transaction pooling on PgBouncer 1.18: no protocol-level prepared statements.
    return psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)


def console(deployed: Deployed, command: str) -> list[dict[str, object]]:
    """A SHOW command on PgBouncer's console as the monitor role (a stats user)."""
    with connect(dsn(deployed, user=MONITOR, dbname="pgbouncer")) as conn:
        cur = conn.execute(command)
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def main_pid(deployed: Deployed) -> str:
    pid = on_primary(deployed, "systemctl show -p MainPID --value pgbouncer")
    assert pid not in ("", "0"), "pgbouncer is not running"
    return pid


def config_value(deployed: Deployed, key: str) -> str:
    return next(str(r["value"]) for r in console(deployed, "SHOW CONFIG") if r["key"] == key)


@pytest.fixture
def pgbouncer_pid(deployed: Deployed) -> Iterator[str]:
    """PgBouncer's PID before the test; the test fails if PgBouncer restarted or died."""
    pid = main_pid(deployed)
    yield pid
    assert main_pid(deployed) == pid, "PgBouncer restarted (or crashed) during the test"


def test_first_deploy_installed_pgbouncer(deployed: Deployed) -> None:
    # By the host's one apt-get install (deploy/aptbatch.py), on the first operation of its batch.
    assert "Install and configure PostgreSQL | Install PostgreSQL and tools" in \
        deployed.first.changed
    assert on_primary(deployed, "dpkg-query -W -f='${Status}\\n' pgbouncer; "
                      "systemctl is-active pgbouncer; systemctl is-enabled pgbouncer") \
        == "install ok installed\nactive\nenabled"


def test_app_role_connects_through_6432_with_verify_full(deployed: Deployed,
                                                         pgbouncer_pid: str) -> None:
    with connect(dsn(deployed)) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.info.parameter_status("server_version")  # a real server answered
        # Through PgBouncer, PostgreSQL sees a local-socket client (no client address).
        user, addr = conn.execute("SELECT current_user, inet_client_addr()").fetchone()  # type: ignore[misc]
        assert (user, addr) == (APP_USER, None)
    pools = {(r["database"], r["user"]) for r in console(deployed, "SHOW POOLS")}
    assert (APP_DB, APP_USER) in pools


def test_plaintext_wrong_password_unknown_user_and_superuser_are_rejected(
        deployed: Deployed, pgbouncer_pid: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        connect(dsn(deployed, sslmode="disable"))
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        connect(dsn(deployed, password="not-the-password"))
    with pytest.raises(psycopg.OperationalError, match="no such user"):
        connect(dsn(deployed, user="nobody_here", password="x"))
    # The lookup function never returns a superuser: bgdb_admin cannot come in through 6432.
    with pytest.raises(psycopg.OperationalError, match="no such user"):
        connect(dsn(deployed, user="bgdb_admin"))
    # An unknown user on the admin console crashes PgBouncer 1.18 when auth_user is global;
    # ours is per database (pgbouncer_pid checks it survived).
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        connect(dsn(deployed, user="nobody_here", dbname="pgbouncer", password="x"))


def test_show_pools_and_stats_as_monitor_but_no_admin_commands(deployed: Deployed) -> None:
    pools = console(deployed, "SHOW POOLS")
    assert pools and {"cl_active", "sv_active", "pool_mode"} <= set(pools[0])
    assert {r["pool_mode"] for r in pools if r["database"] == APP_DB} == {"transaction"}
    assert any(r["database"] == APP_DB for r in console(deployed, "SHOW STATS"))
    with connect(dsn(deployed, user=MONITOR, dbname="pgbouncer")) as conn, \
            pytest.raises(psycopg.Error, match="admin access needed"):
        conn.execute("RELOAD")


def test_500_concurrent_clients_share_the_pool(deployed: Deployed, pgbouncer_pid: str) -> None:
    clients, served, peak_server, peak_clients = 500, 0, 0, 0
    stop = threading.Event()
    errors: list[str] = []

    def sample() -> None:  # the server's and PgBouncer's view, every 20 ms, beside the load
        nonlocal peak_server, peak_clients
        with psycopg.connect(admin_dsn(deployed.primary.address), autocommit=True) as pg, \
                connect(dsn(deployed, user=MONITOR, dbname="pgbouncer")) as bouncer:
            while not stop.is_set():
                row = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                                 "usename = %s", (APP_DB, APP_USER)).fetchone()
                peak_server = max(peak_server, row[0] if row else 0)
                cur = bouncer.execute("SHOW POOLS")
                names = [c.name for c in cur.description or []]
                for r in cur.fetchall():
                    p = dict(zip(names, r, strict=True))
                    if (p["database"], p["user"]) == (APP_DB, APP_USER):
                        clients_now = int(str(p["cl_active"])) + int(str(p["cl_waiting"]))
                        peak_clients = max(peak_clients, clients_now)
                time.sleep(0.02)

    async def load() -> int:
        conninfo = dsn(deployed, connect_timeout="60")
        handshakes = asyncio.Semaphore(50)  # pgbouncer's listen backlog is 128
        all_open = asyncio.Event()
        opened = 0

        async def client(i: int) -> int:
            nonlocal opened
            async with handshakes:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True,
                                                             prepare_threshold=None)
            async with conn:
                opened += 1
                if opened == clients:
                    all_open.set()
                await asyncio.wait_for(all_open.wait(), 90)  # every client is connected now
                cur = await conn.execute("SELECT %s::int, pg_sleep(0.05)", (i,))
                row = await cur.fetchone()
                return 1 if row and row[0] == i else 0

        results = await asyncio.gather(*(client(i) for i in range(clients)),
                                       return_exceptions=True)
        errors.extend(repr(r) for r in results if isinstance(r, BaseException))
        return sum(r for r in results if isinstance(r, int))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        served = asyncio.run(asyncio.wait_for(load(), 180))
    finally:
        stop.set()
        sampler.join(10)
    seconds = time.monotonic() - started
    print(f"500 clients: {served} served in {seconds:.1f}s; peak {peak_clients} clients in "
          f"PgBouncer, peak {peak_server} server connections")
    assert not errors, errors[:5]
    assert served == clients
    assert peak_clients >= clients * 0.9, "the clients were not concurrent"
    assert 1 <= peak_server <= POOL + RESERVE, \
        f"{peak_server} server connections for {APP_DB}, pool {POOL} + reserve {RESERVE}"


def test_our_client_library_works_through_pgbouncer(deployed: Deployed) -> None:
    config = AdapterConfig(host=deployed.primary.address, port=PORT, password=secrets.password(
        APP_USER), ssl_root_cert=CA, pool_size=20, application_name="pgbouncer-test")

    async def run() -> tuple[list[object], int, object]:
        async with PostgreSQLAdapter(config) as db:
            # The same text many times: psycopg's default would prepare it on the server.
            values = await asyncio.gather(*(db.fetchval("SELECT $1::int * 2", i)
                                            for i in range(200)))
            agent = f"pgbouncer-test-{uuid.uuid4().hex[:8]}"
            await db.execute("INSERT INTO agents (agent_id, name, type) VALUES ($1, $2, $3)",
                             agent, "pgbouncer test", "test")  # a guarded write (two round trips)
            updated = await db.execute("UPDATE agents SET state = $1 WHERE agent_id = $2",
                                       "running", agent)
            state = await db.fetchval("SELECT state FROM agents WHERE agent_id = $1", agent)
            await db.execute("DELETE FROM agents WHERE agent_id = $1", agent)
            return list(values), updated, state

    values, updated, state = asyncio.run(run())
    assert values == [i * 2 for i in range(200)]
    assert (updated, state) == (1, "running")


def test_auth_objects_and_file_hold_no_plaintext(deployed: Deployed) -> None:
    fn = "'pgbouncer.user_search(text)'::regprocedure"
    assert psql(deployed, f"SELECT p.prosecdef, pg_get_userbyid(p.proowner), "
                f"has_function_privilege('pgbouncer', {fn}, 'EXECUTE'), "
                f"has_function_privilege('{APP_USER}', {fn}, 'EXECUTE'), "
                f"has_function_privilege('{MONITOR}', {fn}, 'EXECUTE') "
                f"FROM pg_proc p WHERE p.oid = {fn}") == "t|postgres|t|f|f"
    assert on_primary(deployed, "stat -c '%a %U %G' /etc/pgbouncer/userlist.txt") \
        == "640 root postgres"
    content = on_primary(deployed, "cat /etc/pgbouncer/userlist.txt /etc/pgbouncer/pgbouncer.ini")
    entries = [line.split() for line in content.splitlines() if line.startswith('"')]
    assert [e[0] for e in entries] == ['"pgbouncer"', f'"{MONITOR}"']
    assert all(e[1].startswith('"SCRAM-SHA-256$4096:') for e in entries)
    for role in ("pgbouncer", MONITOR, APP_USER):
        assert secrets.password(role) not in content
    # The file carries exactly the verifier PostgreSQL stores (SCRAM pass-through needs it).
    stored = psql(deployed, "SELECT string_agg(rolpassword, ' ' ORDER BY rolname = 'pgbouncer' "
                  f"DESC) FROM pg_authid WHERE rolname IN ('pgbouncer', '{MONITOR}')")
    assert " ".join(e[1].strip('"') for e in entries) == stored


def test_firewall_opens_6432_to_allowed_hosts_only(deployed: Deployed) -> None:
    probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{deployed.primary.address}/{PORT}' && echo open"
    inside = ssh(deployed, deployed.node(2).address, probe)
    outside = ssh(deployed, deployed.node(3).address, probe)
    assert inside.stdout.strip() == "open", inside.stderr
    assert outside.stdout.strip() != "open" and "refused" in outside.stderr


def test_config_change_reloads_without_dropping_a_session(deployed: Deployed,
                                                         pgbouncer_pid: str) -> None:
    reload_op = "Install and configure PgBouncer | Reload PgBouncer (clients stay connected)"
    with connect(dsn(deployed, application_name="kept-open")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        try:
            result = deployed.deploy(json.dumps({"pgbouncer_server_idle_timeout": 300}))
            assert result.returncode == 0, result.output[-3000:]
            assert reload_op in result.changed, result.changed
            assert not [c for c in result.changed if "Restart PgBouncer" in c]
            assert config_value(deployed, "server_idle_timeout") == "300"
            # The same client connection, opened before the reload, still works.
            assert conn.execute("SELECT 2").fetchone() == (2,)
        finally:
            restored = deployed.deploy()
        assert restored.returncode == 0, restored.output[-3000:]
        assert conn.execute("SELECT 3").fetchone() == (3,)
    assert config_value(deployed, "server_idle_timeout") == "600"


INI = "/etc/pgbouncer/pgbouncer.ini"
RELOAD = "systemctl reload pgbouncer && sleep 0.5"


def _set(key: str, old: str, new: str) -> str:
    return f"sed -i 's/^{key} = {old}$/{key} = {new}/' {INI}"


# (check, how to break what it guards, how to restore it, what its message must say)
BREAKAGES = [
    ("test_pgbouncer_running", "systemctl stop pgbouncer", "systemctl start pgbouncer",
     "pgbouncer is not running"),
    ("test_pgbouncer_tls_enforced", f"{_set('client_tls_sslmode', 'require', 'allow')} && {RELOAD}",
     f"{_set('client_tls_sslmode', 'allow', 'require')} && {RELOAD}",
     "PgBouncer did not refuse a client without TLS"),
    ("test_pgbouncer_pooling", f"{_set('default_pool_size', str(POOL), '7')} && {RELOAD}",
     f"{_set('default_pool_size', '7', str(POOL))} && {RELOAD}",
     "PgBouncer runs with {'default_pool_size': '7'}; the deploy asked for"),
    ("test_pgbouncer_auth_without_plaintext", "chmod 0644 /etc/pgbouncer/userlist.txt",
     "chmod 0640 /etc/pgbouncer/userlist.txt", "expected 0640 root:postgres"),
    ("test_pgbouncer_listening",
     f"{_set('listen_addr', '.*', '127.0.0.1')} && systemctl restart pgbouncer",
     f"{_set('listen_addr', '.*', '{address},127.0.0.1')} && systemctl restart pgbouncer",
     "pgbouncer is not listening on {address}:6432"),
]


@pytest.mark.parametrize(("check", "breaks", "restores", "message"), BREAKAGES,
                         ids=[b[0] for b in BREAKAGES])
def test_readiness_check_says_what_is_wrong(deployed: Deployed, tmp_path: Path, check: str,
                                            breaks: str, restores: str, message: str) -> None:
    address = deployed.primary.address
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "checks", "-k", check,
           f"--readiness-report={tmp_path / 'readiness.md'}"]
    passing = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={**os.environ, **deployed.env})
    assert passing.returncode == 0, passing.stdout[-2000:]
    on_primary(deployed, breaks)
    try:
        failing = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=120,
                                 env={**os.environ, **deployed.env})
    finally:
        on_primary(deployed, restores.replace("{address}", address))
    assert failing.returncode == 1, failing.stdout[-2000:]
    assert message.replace("{address}", address) in failing.stdout, failing.stdout[-2000:]


def test_second_deploy_changes_nothing_in_pgbouncer(deployed: Deployed,
                                                    pgbouncer_pid: str) -> None:
    again = deployed.deploy()
    assert again.returncode == 0, again.output[-3000:]
    mine = [c for c in again.changed
            if c.startswith(("Install and configure PgBouncer", "Create the database, roles"))]
    assert again.total_ops > 20 and mine == [], f"second deploy changed: {mine}"
