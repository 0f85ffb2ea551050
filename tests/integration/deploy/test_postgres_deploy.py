"""The PostgreSQL deploy on real sandbox hosts: what it sets, who can connect, idempotency and
restart-awareness. Tests that change settings restore them at the end of their own test."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from deploy import hostfacts, secrets
from tests.sandbox_fixtures import Deployed


def ssh(deployed: Deployed, host: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(deployed.ssh_config()), host, command],
                          capture_output=True, text=True, timeout=60)


def psql(deployed: Deployed, sql: str, db: str = "background_agents") -> str:
    out = ssh(deployed, deployed.primary.address,
              f"runuser -u postgres -- psql -XAtq -d {db} -c \"{sql}\"")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def app_dsn(deployed: Deployed, **overrides: str) -> str:
    params = dict(host=deployed.primary.address, dbname="background_agents",
                  user="bg_agents_user", password=secrets.password("bg_agents_user"),
                  sslmode="verify-full", sslrootcert=str(secrets.secrets_dir() / "ca/ca.crt"),
                  connect_timeout="5")
    params.update(overrides)
    return psycopg.conninfo.make_conninfo(**params)


def start_time(deployed: Deployed) -> str:
    return psql(deployed, "SELECT pg_postmaster_start_time()")


def test_first_deploy_changed_things(deployed: Deployed) -> None:
    assert deployed.first.returncode == 0
    assert "Install and configure PostgreSQL | Install PostgreSQL and tools" in \
        deployed.first.changed


def test_second_deploy_changes_nothing_and_restarts_nothing(deployed: Deployed) -> None:
    before = start_time(deployed)
    again = deployed.deploy()
    assert again.returncode == 0, again.output[-3000:]
    assert again.total_ops > 20, "the results table was not read"
    assert again.changed == [], f"second deploy changed: {again.changed}"
    assert start_time(deployed) == before, "PostgreSQL was restarted by a no-change deploy"


def test_verify_full_tls_as_app_role(deployed: Deployed) -> None:
    with psycopg.connect(app_dsn(deployed)) as conn:
        row = conn.execute(
            "SELECT ssl, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True, "bg_agents_user")
        conn.execute("SELECT 1")
        rows = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
        assert rows is not None and rows[0] > 0


def test_plaintext_and_wrong_password_are_rejected(deployed: Deployed) -> None:
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects"):
        psycopg.connect(app_dsn(deployed, sslmode="disable"))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(app_dsn(deployed, password="not-the-password"))


def test_settings_match_the_tuning(deployed: Deployed) -> None:
    """Tuned for the RAM the host reports (no declared size, as on a real host): PGTune oltp."""
    facts = hostfacts.parse(ssh(deployed, deployed.primary.address,
                                hostfacts.COMMAND).stdout.splitlines())
    sizes = ("shared_buffers", "effective_cache_size", "maintenance_work_mem")
    rows = psql(deployed, "SELECT name, setting, unit FROM pg_settings WHERE name IN "
                f"({', '.join(repr(n) for n in sizes)})").splitlines()
    kb = {name: int(setting) * {"8kB": 8, "kB": 1, "MB": 1024}[unit]
          for name, setting, unit in (row.split("|") for row in rows)}
    # PGTune: RAM/4, RAM*3/4, RAM/16 capped at 8 GB (PostgreSQL keeps whole 8 kB pages).
    assert abs(kb["shared_buffers"] - facts.memory_kb // 4) < 8
    assert abs(kb["effective_cache_size"] - facts.memory_kb * 3 // 4) < 8
    assert kb["maintenance_work_mem"] == min(facts.memory_kb // 16, 8 << 20)
    shown = {name: psql(deployed, f"SHOW {name}") for name in
             ("max_connections", "password_encryption", "ssl", "track_activity_query_size",
              "jit")}
    assert shown == {"max_connections": "300", "password_encryption": "scram-sha-256",
                     "ssl": "on", "track_activity_query_size": "2kB", "jit": "off"}


def test_firewall_lets_allowed_hosts_in_and_keeps_others_out(deployed: Deployed) -> None:
    probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{deployed.primary.address}/5432' && echo open"
    inside = ssh(deployed, deployed.node(2).address, probe)
    outside = ssh(deployed, deployed.node(3).address, probe)
    assert inside.stdout.strip() == "open", inside.stderr
    assert outside.stdout.strip() != "open" and "refused" in outside.stderr


def test_kernel_settings_file_written_not_loaded_in_container(deployed: Deployed) -> None:
    out = ssh(deployed, deployed.primary.address, "cat /etc/sysctl.d/60-bgdb-postgresql.conf")
    assert "vm.overcommit_memory = 2" in out.stdout


def test_work_mem_change_reloads_without_restart(deployed: Deployed) -> None:
    tuned = psql(deployed, "SHOW work_mem")
    before = start_time(deployed)
    try:
        result = deployed.deploy(json.dumps({"postgres_overrides": {"work_mem": "6MB"}}))
        assert result.returncode == 0, result.output[-3000:]
        assert psql(deployed, "SHOW work_mem") == "6MB"
        assert "reloaded, no restart needed" in result.output or start_time(deployed) == before
        assert start_time(deployed) == before, "a work_mem change restarted PostgreSQL"
    finally:
        assert deployed.deploy().returncode == 0
    assert psql(deployed, "SHOW work_mem") == tuned


def test_shared_buffers_change_restarts_once(deployed: Deployed) -> None:
    tuned = psql(deployed, "SHOW shared_buffers")
    before = start_time(deployed)
    try:
        result = deployed.deploy(json.dumps({"postgres_overrides": {"shared_buffers": "256MB"}}))
        assert result.returncode == 0, result.output[-3000:]
        assert psql(deployed, "SHOW shared_buffers") == "256MB"
        after = start_time(deployed)
        assert after != before, "shared_buffers changed without the restart it needs"
        again = deployed.deploy(json.dumps({"postgres_overrides": {"shared_buffers": "256MB"}}))
        assert again.changed == [] and start_time(deployed) == after, "restarted twice"
    finally:
        assert deployed.deploy().returncode == 0
    assert psql(deployed, "SHOW shared_buffers") == tuned


def test_pgaudit_preloaded_and_audit_off_drops_its_extension(deployed: Deployed) -> None:
    assert psql(deployed, "SHOW shared_preload_libraries") == \
        "pg_stat_statements,pgaudit,passwordcheck,auth_delay,set_user"
    assert psql(deployed, "SHOW pgaudit.log") == "ddl, role"
    extension = "SELECT count(*) FROM pg_extension WHERE extname = 'pgaudit'"
    assert psql(deployed, extension) == "1"
    before = start_time(deployed)
    try:
        off = deployed.deploy(json.dumps({"postgres_pgaudit": False}))
        assert off.returncode == 0, off.output[-3000:]
        assert psql(deployed, "SHOW shared_preload_libraries") == \
            "pg_stat_statements,passwordcheck,auth_delay,set_user"
        assert start_time(deployed) != before, "preload changed without the restart it needs"
        # Left behind, the extension's event triggers would fail every DDL without the library.
        assert psql(deployed, extension) == "0"
        psql(deployed, "CREATE TABLE pgaudit_off_probe (id int); DROP TABLE pgaudit_off_probe")
    finally:
        on = deployed.deploy()
        assert on.returncode == 0, on.output[-3000:]
    assert psql(deployed, "SHOW shared_preload_libraries") == \
        "pg_stat_statements,pgaudit,passwordcheck,auth_delay,set_user"
    assert psql(deployed, extension) == "1"
