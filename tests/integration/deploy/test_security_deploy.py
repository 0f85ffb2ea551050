"""The hardening on the session's deployed lab, seen from a client: the password policy, the
delay after a failed login, TLS 1.3 only and forward-secret ciphers, and the break-glass
superuser following postgres_admin_cidrs. Tests that change the host restore it."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from deploy import exporter, secrets
from tests.integration.checks.test_readiness_breaks_ops import run_checks
from tests.integration.deploy.test_postgres_deploy import app_dsn, psql, ssh
from tests.sandbox_fixtures import Deployed, admin_dsn

WRONG_LOGINS = 10
EXPORTER_PORT = 9847


def test_weak_plaintext_password_refused(deployed: Deployed) -> None:
    with psycopg.connect(admin_dsn(deployed.primary.address), autocommit=True) as conn:
        conn.execute("CREATE ROLE bgdb_weak_probe NOLOGIN")
        try:
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="too short"):
                conn.execute("ALTER ROLE bgdb_weak_probe PASSWORD 'abc'")
            # A SCRAM verifier (what the deploy sends) cannot be checked: passwordcheck lets it.
            conn.execute("ALTER ROLE bgdb_weak_probe PASSWORD "
                         "'SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy'")
        finally:
            conn.execute("DROP ROLE bgdb_weak_probe")


def test_each_wrong_password_waits_auth_delay(deployed: Deployed) -> None:
    delay = float(psql(deployed, "SELECT setting FROM pg_settings "
                                 "WHERE name = 'auth_delay.milliseconds'")) / 1000
    assert delay >= 0.5
    took = []
    for _ in range(WRONG_LOGINS):
        start = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(app_dsn(deployed, password="not-the-password"))
        took.append(time.monotonic() - start)
    assert min(took) >= delay, f"wrong logins answered in {took} s, auth_delay is {delay} s"


def test_tls12_client_refused_when_minimum_is_13(deployed: Deployed) -> None:
    assert psql(deployed, "SHOW ssl_min_protocol_version") == "TLSv1.3"
    with pytest.raises(psycopg.OperationalError, match="protocol version|alert"):
        psycopg.connect(app_dsn(deployed, ssl_max_protocol_version="TLSv1.2"))
    with psycopg.connect(app_dsn(deployed)) as conn:
        assert conn.execute("SELECT version FROM pg_stat_ssl "
                            "WHERE pid = pg_backend_pid()").fetchone() == ("TLSv1.3",)


def handshake(address: str, cipher: str) -> subprocess.CompletedProcess[str]:
    """A TLS 1.2 handshake offering `cipher` only, through PostgreSQL's STARTTLS."""
    return subprocess.run(["openssl", "s_client", "-connect", f"{address}:5432", "-starttls",
                           "postgres", "-tls1_2", "-cipher", cipher, "-brief"],
                          input="", capture_output=True, text=True, timeout=30)


def test_non_forward_secret_ciphers_refused(deployed: Deployed) -> None:
    """With TLS 1.2 allowed (an operator's override), only the pinned forward-secret AEAD suites
    are accepted. The bundle's key is ECDSA, for which OpenSSL 3 has no non-FS suite at all; the
    pin is what refuses them for a brought RSA certificate, and it visibly applies: an ECDHE
    suite outside it (CBC) is refused too."""
    psql(deployed, "ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1.2'", "postgres")
    psql(deployed, "SELECT pg_reload_conf()", "postgres")
    try:
        time.sleep(0.5)
        address = deployed.primary.address
        for refused in ("AES128-GCM-SHA256:AES256-SHA:AES128-SHA256", "ECDHE-ECDSA-AES128-SHA"):
            out = handshake(address, refused)
            assert out.returncode != 0 and "handshake failure" in out.stderr, \
                f"{refused} accepted:\n{out.stderr}"
        ok = handshake(address, "ECDHE-ECDSA-AES128-GCM-SHA256")
        assert ok.returncode == 0 and "ECDHE-ECDSA-AES128-GCM-SHA256" in ok.stderr, ok.stderr
    finally:
        psql(deployed, "ALTER SYSTEM RESET ssl_min_protocol_version", "postgres")
        psql(deployed, "SELECT pg_reload_conf()", "postgres")


def test_postgres_role_has_a_connection_limit(deployed: Deployed) -> None:
    assert psql(deployed, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'postgres'") == "10"


def scrape(address: str, auth: tuple[str, str] | None = None) -> int:
    """HTTP status of an https scrape of the exporter, the bundle's CA verifying it."""
    ctx = ssl.create_default_context(cafile=str(secrets.secrets_dir() / "ca" / "ca.crt"))
    request = urllib.request.Request(f"https://{address}:{EXPORTER_PORT}/metrics")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_admin_cidrs_emptied_and_exporter_tls_with_basic_auth(deployed: Deployed,
                                                              tmp_path: Path) -> None:
    """One deploy for two things (CI time): bgdb_admin dropped once postgres_admin_cidrs is
    empty; the exporter on TLS with basic auth (bcrypt), refusing a scrape without credentials
    while the readiness checks, given the same settings, still pass."""
    exists = "SELECT count(*) FROM pg_roles WHERE rolname = 'bgdb_admin'"
    assert psql(deployed, exists) == "1", "the lab sets postgres_admin_cidrs: bgdb_admin exists"
    changed = {"postgres_admin_cidrs": [], "exporter_tls": True,
               "exporter_basic_auth_user": "prometheus"}
    address = deployed.primary.address
    try:
        emptied = deployed.deploy(json.dumps(changed))
        assert emptied.returncode == 0, emptied.output[-3000:]
        assert any("Drop break-glass role bgdb_admin" in op for op in emptied.changed)
        assert psql(deployed, exists) == "0"
        assert "bgdb_admin" not in psql(deployed, "SELECT string_agg(user_name::text, ',') "
                                                  "FROM pg_hba_file_rules", "postgres")
        stored = ssh(deployed, address, f"cat {exporter.CONFIG}").stdout
        assert json.loads(stored)["basic_auth_password_bcrypt"].startswith("$2b$")
        password = secrets.password(exporter.SCRAPE_SECRET)
        deadline = time.monotonic() + 20  # the exporter restarts with its new configuration
        while True:
            try:
                first = scrape(address)
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert first == 401
        assert scrape(address, ("prometheus", "wrong")) == 401
        assert scrape(address, ("prometheus", password)) == 200
        out = run_checks(deployed, tmp_path, "test_exporter", extra=changed)
        assert out[0] == 0, out[1]
        # The alerts keep working: Prometheus scrapes the exporter the way it now serves (https,
        # basic auth; a scrape without them would get 401 and the target would be down). A scrape
        # during the exporter's restart may have failed: the next one must succeed.
        deadline = time.monotonic() + 60
        while True:
            up = run_checks(deployed, tmp_path, "test_prometheus_targets_up", extra=changed)
            if up[0] == 0 or time.monotonic() > deadline:
                break
            time.sleep(5)
        assert up[0] == 0, up[1]
        again = deployed.deploy(json.dumps(changed))  # the bcrypt hash is kept while it matches
        assert again.returncode == 0 and again.changed == [], again.output[-3000:]
    finally:
        back = deployed.deploy()
        assert back.returncode == 0, back.output[-3000:]
    assert psql(deployed, exists) == "1"
    with psycopg.connect(admin_dsn(address)) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (True,)


def test_monitor_cannot_read_a_payload_column(deployed: Deployed) -> None:
    with psycopg.connect(admin_dsn(deployed.primary.address, "background_agents"),
                         autocommit=True) as conn:
        conn.execute("SET ROLE bg_agents_monitor")
        # What the exporter reads: the payload-free view the search path finds first.
        assert conn.execute("SELECT count(*) >= 0 FROM agents").fetchone() == (True,)
        for column, table in (("config", "agents"), ("metrics", "agent_heartbeats"),
                              ("prompt", "llm_conversations")):
            with pytest.raises(psycopg.errors.UndefinedColumn):
                conn.execute(f"SELECT {column} FROM {table}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT {column} FROM public.{table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT response FROM public.llm_conversations")
        assert conn.execute("SELECT pg_has_role('bg_agents_monitor', 'bg_agents_readonly', "
                            "'MEMBER'), pg_has_role('bg_agents_monitor', 'pg_read_all_stats', "
                            "'USAGE')").fetchone() == (False, False)


PROBE_PASSWORD = "Probe-literal-8c1f2e"  # passes passwordcheck; the role is dropped at once


def test_monitor_cannot_read_another_sessions_query_text(deployed: Deployed) -> None:
    """An ALTER ROLE ... PASSWORD with its literal, in pg_stat_statements and as another session's
    last query in pg_stat_activity: the ops role (pg_monitor) reads it, the monitor never; the
    monitor's functions still give that session's state and the statement's query id."""
    address = deployed.primary.address
    with psycopg.connect(admin_dsn(address, "background_agents"), autocommit=True) as other:
        other.execute("CREATE ROLE bgdb_probe_secret NOLOGIN")
        try:
            other.execute(f"ALTER ROLE bgdb_probe_secret PASSWORD '{PROBE_PASSWORD}'")
            pid = other.info.backend_pid
            like = f"%{PROBE_PASSWORD}%"
            seen = {}
            for role in ("bg_agents_ops", "bg_agents_monitor"):
                with psycopg.connect(admin_dsn(address, "background_agents"),
                                     autocommit=True) as conn:
                    conn.execute(f"SET ROLE {role}")
                    seen[role] = conn.execute(
                        "SELECT (SELECT count(*) FROM public.pg_stat_statements"
                        "        WHERE query LIKE %s),"
                        "       (SELECT query LIKE %s FROM pg_stat_activity WHERE pid = %s)",
                        [like, like, pid]).fetchone()
                    if role == "bg_agents_monitor":
                        state = conn.execute("SELECT state FROM bg_agents_monitor.activity() "
                                             "WHERE pid = %s", [pid]).fetchone()
                        ids = conn.execute("SELECT count(*) FROM bg_agents_monitor.statements() "
                                           "WHERE queryid IS NOT NULL AND userid <> "
                                           "'bg_agents_monitor'::regrole").fetchone()
                        names = conn.execute(
                            "SELECT string_agg(DISTINCT a, ',') FROM pg_proc p, "
                            "unnest(p.proargnames) a WHERE p.pronamespace = "
                            "'bg_agents_monitor'::regnamespace").fetchone()
        finally:
            other.execute("DROP ROLE bgdb_probe_secret")
    assert seen["bg_agents_ops"] == (1, True), seen
    assert seen["bg_agents_monitor"] == (0, False), seen
    assert state == ("idle",)
    assert ids is not None and ids[0] > 0
    assert names is not None and "query" not in names[0].split(","), names
