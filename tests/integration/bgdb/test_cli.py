"""The operator commands (`bgdb status|troubleshoot|maintenance run|connect`) on deployed sandbox
hosts, run as an operator runs them (a subprocess with the lab's inventory), their output checked
against what the database itself says. Rows a test inserts carry a unique prefix and are removed
by the test; pgcli runs in a tmux server of the test's own (`tmux -S`), killed afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from deploy import secrets
from tests.sandbox_fixtures import Deployed

REPO = Path(__file__).resolve().parents[3]
DB = "background_agents"


def ssh(deployed: Deployed, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(deployed.ssh_config()), deployed.primary.address,
                           command], capture_output=True, text=True, timeout=timeout)


def psql(deployed: Deployed, sql: str) -> list[list[str]]:
    out = ssh(deployed, f"cd / && runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -F '|' "
                        f"-d {DB} -c \"{sql}\"")
    assert out.returncode == 0, out.stderr
    return [line.split("|") for line in out.stdout.splitlines()]


def bgdb(deployed: Deployed, *args: str, timeout: float = 300,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **deployed.env, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bgdb", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def pgcli_rows(stdout: str) -> list[list[str]]:
    """The cells of pgcli's table output, header row included."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in stdout.splitlines() if line.startswith("| ")]


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def tag(deployed: Deployed) -> Iterator[str]:
    """A unique prefix for this test's agents, deleted afterwards (heartbeats cascade)."""
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    yield prefix
    psql(deployed, f"DELETE FROM agents WHERE agent_id LIKE '{prefix}-%'")


# --- status ----------------------------------------------------------------------------------

def test_status_json_matches_the_database(deployed: Deployed, tag: str) -> None:
    psql(deployed, f"INSERT INTO agents (agent_id, name, type, state, started_at) VALUES "
                   f"('{tag}-ok', 'ok', 'worker', 'running', now() - interval '2 hours'), "
                   f"('{tag}-gone', 'gone', 'worker', 'running', now() - interval '1 day'), "
                   f"('{tag}-stopped', 'stopped', 'worker', 'stopped', now())")
    # The seed's registration: no name, no type.
    psql(deployed, f"INSERT INTO agents (agent_id, state, started_at) VALUES "
                   f"('{tag}-seed', 'running', now())")
    psql(deployed, f"INSERT INTO agent_heartbeats (agent_id, metrics, error_count) VALUES "
                   f"('{tag}-ok', '{{\\\"cpu_usage\\\": 40}}', 1), "
                   f"('{tag}-ok', '{{\\\"cpu_usage\\\": 20}}', 2)")
    psql(deployed, f"INSERT INTO agent_heartbeats (agent_id, timestamp) VALUES "
                   f"('{tag}-gone', now() - interval '20 minutes')")

    proc = bgdb(deployed, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = as_json(proc)
    assert doc["unreachable"] == []
    [host] = doc["hosts"]
    assert (host["host"], host["role"], host["errors"]) == (deployed.primary.name, "primary", [])

    active_in_db = {r[0] for r in psql(
        deployed, "SELECT agent_id FROM agents WHERE stopped_at IS NULL"
                  " AND state NOT IN ('stopped', 'terminated')")}
    assert {a["agent_id"] for a in host["active_agents"]} == active_in_db
    mine = {a["agent_id"]: a for a in host["active_agents"] if a["agent_id"].startswith(tag)}
    assert set(mine) == {f"{tag}-ok", f"{tag}-gone", f"{tag}-seed"}
    assert mine[f"{tag}-seed"]["name"] == f"{tag}-seed"  # no name: the agent_id stands in
    assert mine[f"{tag}-ok"]["name"] == "ok"
    assert 86400 - 120 < mine[f"{tag}-gone"]["uptime_seconds"] < 86400 + 600
    assert 1200 - 60 < mine[f"{tag}-gone"]["seconds_since_heartbeat"] < 1200 + 600

    missing = {a["agent_id"] for a in host["missing_heartbeats"]}
    assert f"{tag}-gone" in missing and f"{tag}-ok" not in missing
    [[missing_in_db]] = psql(deployed, "SELECT count(*) FROM agents a WHERE a.stopped_at IS NULL "
                                       "AND a.state NOT IN ('stopped', 'terminated') AND NOT "
                                       "EXISTS (SELECT 1 FROM agent_heartbeats h WHERE "
                                       "h.agent_id = a.agent_id AND h.timestamp > now() - "
                                       "interval '5 minutes')")
    assert host["health"]["agents_missing_heartbeat"] == int(missing_in_db) == len(missing)
    assert host["health"]["agents_active"] == len(active_in_db)

    [recent] = [r for r in host["recent_heartbeats"] if r["agent_id"] == f"{tag}-ok"]
    assert (recent["heartbeat_count"], recent["error_count"]) == (2, 3)
    assert recent["avg_cpu_usage"] == pytest.approx(30.0)
    assert all(r["agent_id"] != f"{tag}-gone" for r in host["recent_heartbeats"])

    # No replicas in the test lab: the server says the same.
    [[replicas]] = psql(deployed, "SELECT count(*) FROM pg_stat_replication")
    assert len(host["replication"]["replicas"]) == int(replicas) == 0
    assert host["replication"]["standby"] is None

    # Backups: the jobs' status files on the host, when the backup deploy has written them.
    listing = ssh(deployed, "ls /var/lib/bgdb/status/*.json 2>/dev/null").stdout.split()
    if not listing:
        assert host["backup"] is None
    else:
        jobs = {j["job"] for j in host["backup"]["jobs"]}
        assert jobs == {Path(p).stem for p in listing if not p.endswith("/backup.json")}
        if "/var/lib/bgdb/status/backup.json" in listing and "backup-full" in jobs:
            assert host["backup"]["any_backup_age_seconds"] >= 0

    # PgBouncer: pools when it runs on the host (the app role's pool exists once used).
    running = ssh(deployed, "systemctl is-active --quiet pgbouncer").returncode == 0
    if not running:
        assert host["pgbouncer"] is None
    else:
        assert "error" not in host["pgbouncer"], host["pgbouncer"]
        assert all(p["database"] != "pgbouncer" for p in host["pgbouncer"]["pools"])


def test_status_for_people_shows_the_missing_agent(deployed: Deployed, tag: str) -> None:
    psql(deployed, f"INSERT INTO agents (agent_id, name, type, state, started_at) VALUES "
                   f"('{tag}-silent', 'silent', 'worker', 'running', now())")
    proc = bgdb(deployed, "status", deployed.primary.name)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"{deployed.primary.name} ({deployed.primary.address}) — primary" in out
    assert "System health" in out and "Agents that missed heartbeats" in out
    section = out.split("Agents that missed heartbeats", 1)[1].split("Replicas", 1)[0]
    assert f"{tag}-silent" in section and "never" in section


# --- troubleshoot ------------------------------------------------------------------------------

@pytest.fixture
def sleeping_query(deployed: Deployed) -> Iterator[str]:
    """A pg_sleep running on the primary (as the app's database superuser, via psql), marked so
    that it can be found; terminated afterwards."""
    marker = f"cli_sleep_{uuid.uuid4().hex[:8]}"
    # Detached from the SSH session (no stdin, output or process group left to wait for).
    started = ssh(deployed, f"cd / && (setsid runuser -u postgres -- psql -XAtq -d {DB} "
                            f"-c 'SELECT pg_sleep(120) AS {marker}' </dev/null >/dev/null 2>&1 &)",
                  timeout=30)
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            rows = psql(deployed, f"SELECT pid FROM pg_stat_activity WHERE query LIKE "
                                  f"'%AS {marker}%' AND pid <> pg_backend_pid()")
            if rows:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the pg_sleep query did not start")
        time.sleep(3)  # older than the test's 2 s threshold
        yield marker
    finally:
        psql(deployed, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query "
                       f"LIKE '%AS {marker}%' AND pid <> pg_backend_pid()")


def sections(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [host] = doc["hosts"]
    return {s["key"]: s for s in host["sections"]}


def test_troubleshoot_flags_a_long_running_query(deployed: Deployed,
                                                 sleeping_query: str) -> None:
    proc = bgdb(deployed, "troubleshoot", "--json", "--long-query-seconds", "2")
    assert proc.returncode == 1, proc.stderr  # something is flagged
    found = sections(as_json(proc))
    long = found["long_queries"]
    assert long["flagged"] and long["error"] is None
    [row] = [r for r in long["flagged_rows"] if sleeping_query in r["query"]]
    [[pid]] = psql(deployed, f"SELECT pid FROM pg_stat_activity WHERE query LIKE "
                             f"'%AS {sleeping_query}%' AND pid <> pg_backend_pid()")
    assert row["pid"] == int(pid) and row["user_name"] == "postgres"
    assert row["database_name"] == DB and row["age_seconds"] >= 2
    assert "pg_cancel_backend" in long["advice"]

    # The same query is not flagged under the default 10 minutes.
    proc = bgdb(deployed, "troubleshoot", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    long = sections(as_json(proc))["long_queries"]
    assert not long["flagged"]
    assert any(sleeping_query in r["query"] for r in long["rows"])


def test_troubleshoot_sections_match_the_server(deployed: Deployed) -> None:
    proc = bgdb(deployed, "troubleshoot", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    found = sections(as_json(proc))
    assert {"connections", "long_queries", "slow_statements", "bloat", "sizes", "disk"} <= \
        set(found)
    assert all(s["error"] is None for s in found.values()), found
    [[max_conn, reserved]] = psql(deployed, "SELECT current_setting('max_connections'), "
                                            "current_setting('superuser_reserved_connections')")
    assert f"of {int(max_conn) - int(reserved)} usable" in found["connections"]["summary"]
    sizes = {r["database_name"]: r["size_bytes"] for r in found["sizes"]["rows"]
             if r["kind"] == "database"}
    [[db_size]] = psql(deployed, f"SELECT pg_database_size('{DB}')")
    assert sizes[DB] == pytest.approx(int(db_size), rel=0.1)
    tables = [r["table_name"] for r in found["sizes"]["rows"] if r["kind"] == "table"]
    assert "agent_heartbeats" in tables
    disk = found["disk"]["rows"][0]
    assert disk["path"] == "/var/lib/postgresql/15/main" and 0 < disk["free_percent"] <= 100
    # pg_stat_statements runs as the app role's statements are recorded.
    assert isinstance(found["slow_statements"]["rows"], list)


def test_troubleshoot_flags_a_slow_statement_of_the_app_role(deployed: Deployed) -> None:
    marker = f"cli_slow_{uuid.uuid4().hex[:8]}"
    app = secrets.password("bg_agents_user")
    ca = secrets.secrets_dir() / "ca" / "ca.crt"
    dsn = psycopg.conninfo.make_conninfo(host=deployed.primary.address, dbname=DB,
                                         user="bg_agents_user", password=app,
                                         sslmode="verify-full", sslrootcert=str(ca))
    with psycopg.connect(dsn, autocommit=True) as conn:
        # pg_stat_statements tells statements apart by structure (a column alias or a constant
        # does not count, a CTE name does): a statement of this test's own.
        conn.execute(f"WITH {marker} AS (SELECT 0.3 AS s) SELECT pg_sleep(s) FROM {marker}")
    proc = bgdb(deployed, "troubleshoot", "--json", "--slow-statement-ms", "200")
    assert proc.returncode == 1, proc.stderr
    slow = sections(as_json(proc))["slow_statements"]
    assert slow["flagged"]
    [row] = [r for r in slow["flagged_rows"] if marker in r["query"]]
    assert row["user_name"] == "bg_agents_user" and row["mean_ms"] >= 290


# --- maintenance -------------------------------------------------------------------------------

def test_maintenance_run_daily(deployed: Deployed) -> None:
    started = time.time()
    proc = bgdb(deployed, "maintenance", "run", "daily")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bgdb-maintenance-daily.service" in proc.stdout
    assert "daily.sql done" in proc.stdout  # the job's own log of this run
    assert "finished successfully" in proc.stdout
    out = ssh(deployed, "cat /var/lib/bgdb/status/maintenance-daily.json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["ok"] is True and st["last_success_timestamp"] >= started - 5


def test_maintenance_failure_exits_non_zero(deployed: Deployed) -> None:
    # A broken maintenance file on the host: the job fails, so does the command, showing the
    # job's error. Afterwards the file is restored, the job run again (its status file says ok
    # again) and the failure event it recorded removed, so other tests see a clean host.
    path = "/usr/local/lib/bgdb/sql/maintenance/monthly.sql"
    assert ssh(deployed, f"cp -p {path} {path}.orig && echo 'SELECT no_such_function();' >> "
                         f"{path}").returncode == 0
    try:
        proc = bgdb(deployed, "maintenance", "run", "monthly")
    finally:
        ssh(deployed, f"mv {path}.orig {path} && systemctl reset-failed "
                      "bgdb-maintenance-monthly.service")
        again = bgdb(deployed, "maintenance", "run", "monthly")
        psql(deployed, "DELETE FROM system_events WHERE event_type = 'scheduled_job_failed' "
                       "AND event_data ->> 'job' = 'maintenance-monthly'")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no_such_function" in proc.stdout
    assert "bgdb-maintenance-monthly.service FAILED" in proc.stdout
    assert again.returncode == 0, again.stdout + again.stderr


def test_bad_input_is_one_line(deployed: Deployed, tmp_path: Path) -> None:
    proc = bgdb(deployed, "status", "no-such-host")
    assert proc.returncode == 2
    assert proc.stderr == (f"bgdb: unknown host 'no-such-host': database hosts are "
                           f"{deployed.primary.name}\n")
    # A secrets directory without the role's password (the CA is there).
    (tmp_path / "ca").mkdir()
    shutil.copy(secrets.secrets_dir() / "ca" / "ca.crt", tmp_path / "ca" / "ca.crt")
    proc = bgdb(deployed, "connect", env={"BGDB_SECRETS_DIR": str(tmp_path),
                                          "POSTGRESQL_PASSWORD": ""})
    assert proc.returncode == 2
    assert proc.stderr.startswith("bgdb: no password for bg_agents_user: set $POSTGRESQL_PASSWORD")
    assert proc.stderr.count("\n") == 1


# --- connect -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "user"), [("app", "bg_agents_user"),
                                            ("readonly", "bg_agents_readonly"),
                                            ("monitor", "bg_agents_monitor")])
def test_connect_runs_pgcli_over_tls_as_the_role(deployed: Deployed, tmp_path: Path, role: str,
                                                 user: str) -> None:
    proc = bgdb(deployed, "connect", "--role", role, "--", "--less-chatty", "-c",
                "SELECT ssl, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                env={"XDG_CONFIG_HOME": str(tmp_path), "PAGER": "cat"}, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pgcli_rows(proc.stdout) == [["ssl", "current_user"], ["True", user]], proc.stdout


def test_connect_via_pgbouncer(deployed: Deployed, tmp_path: Path) -> None:
    if ssh(deployed, "systemctl is-active --quiet pgbouncer").returncode != 0:
        pytest.skip("PgBouncer is not deployed on the primary (yet)")
    proc = bgdb(deployed, "connect", "--via", "pgbouncer", "--", "--less-chatty", "-c",
                "SELECT current_user, inet_server_port() IS NULL AS over_pgbouncer_socket",
                env={"XDG_CONFIG_HOME": str(tmp_path), "PAGER": "cat"}, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # PgBouncer reaches PostgreSQL over its local socket, so the server sees no TCP port.
    assert pgcli_rows(proc.stdout)[1:] == [["bg_agents_user", "True"]], proc.stdout


class Tmux:
    """A tmux server of the test's own (its socket in the test's directory), so no other
    session is ever touched and nothing is left behind."""

    def __init__(self, socket: Path) -> None:
        self.socket = str(socket)

    def __call__(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-J", "-S", "-200", "-t", "bgdb")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        screen = ""
        while time.time() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{text!r} did not appear; screen:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True,
                       timeout=30)
        Path(self.socket).unlink(missing_ok=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_connect_interactive_pgcli_in_tmux(deployed: Deployed, tmp_path: Path) -> None:
    """pgcli started by `bgdb connect` answers a typed query over TLS as the app role; its
    password is in no process's command line and its file is gone after pgcli exits."""
    tmux = Tmux(tmp_path / "tmux.sock")
    run_dir = tmp_path / "tmp"
    run_dir.mkdir()
    env = {**os.environ, **deployed.env, "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "TMPDIR": str(run_dir), "PAGER": "cat", "TERM": "xterm-256color"}
    env_args = [f"{k}={v}" for k, v in env.items() if k in (
        "BGDB_LAB", "BGDB_SECRETS_DIR", "XDG_CONFIG_HOME", "TMPDIR", "PAGER", "TERM", "PATH")]
    command = ["env", *env_args, sys.executable, "-m", "bgdb", "connect"]
    password = secrets.password("bg_agents_user")
    try:
        tmux("new-session", "-d", "-s", "bgdb", "-x", "200", "-y", "50", "-c", str(REPO),
             *command)
        tmux.wait_for(f"{DB}>")  # pgcli's prompt with a DSN: the database name
        # The password file exists (private) while pgcli runs; no command line has the password.
        [passfile] = list(run_dir.glob("bgdb-connect-*/pgpass"))
        assert oct(passfile.stat().st_mode & 0o777) == "0o600"
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert password.encode() not in cmdline.read_bytes(), cmdline
            except OSError:
                continue
        tmux("send-keys", "-t", "bgdb", "-l",
             "SELECT 'tmux' || 'ok' AS probe, ssl, current_user FROM pg_stat_ssl "
             "WHERE pid = pg_backend_pid();")
        tmux("send-keys", "-t", "bgdb", "Enter")
        screen = tmux.wait_for("tmuxok")
        row = next(line for line in screen.splitlines() if "tmuxok" in line and "|" in line)
        assert "True" in row and "bg_agents_user" in row, screen
        tmux("send-keys", "-t", "bgdb", "-l", "\\q")
        tmux("send-keys", "-t", "bgdb", "Enter")
        deadline = time.time() + 20
        while time.time() < deadline and list(run_dir.glob("bgdb-connect-*")):
            time.sleep(0.3)
        assert not list(run_dir.glob("bgdb-connect-*")), "the password file was left behind"
    finally:
        tmux.kill()
