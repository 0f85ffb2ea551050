"""`bgdb loadtest` on the deployed sandbox lab, run as an operator runs it (a subprocess with the
lab's inventory): a run leaves no row of its own behind - also when stopped by SIGINT/SIGTERM, and
a killed one is removed by the next run - while its evidence stays; a target the inventory does
not name as a database host and a primary holding other agents (without the flag) are refused.
Leftovers are planted as rows (what a killed run leaves once its deadline has passed).
Runs are a few seconds of 4 agents; every check reads the database itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bgdb import loadtest_guard as guard
from tests.sandbox_fixtures import Deployed, admin_dsn

REPO = Path(__file__).resolve().parents[3]
DB = "background_agents"
FLAG = "--confirm-existing-data"
# Every table a run writes to, and the columns that name its agents.
RUN_ROWS = {"agents": ("agent_id",), "agent_heartbeats": ("agent_id",),
            "performance_metrics": ("agent_id",), "system_events": ("agent_id",),
            "llm_conversations": ("agent_id",), "help_requests": ("requesting_agent_id",
                                                                  "user_id"),
            "agent_communications": ("from_agent", "to_agent")}


def env(deployed: Deployed) -> dict[str, str]:
    return {**os.environ, **deployed.env, "PYTHONUNBUFFERED": "1"}


def bgdb(deployed: Deployed, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bgdb", *args], cwd=REPO, env=env(deployed),
                          capture_output=True, text=True, timeout=timeout)


def sql(deployed: Deployed, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(admin_dsn(deployed.primary.address, DB), autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def load_test_rows(deployed: Deployed) -> dict[str, int]:
    """Rows naming a load-test agent, per table (only tables that have some)."""
    counts = {}
    for table, columns in RUN_ROWS.items():
        where = " OR ".join(f"{c} LIKE 'bgdb-loadtest-%'" for c in columns)
        (n,), = sql(deployed, f"SELECT count(*) FROM {table} WHERE {where}")
        if n:
            counts[table] = n
    return counts


def pending_help_requests(deployed: Deployed) -> int:
    return int(sql(deployed, "SELECT count(*) FROM help_requests WHERE status = 'pending'")[0][0])


def remove_load_test_rows(deployed: Deployed) -> None:
    with psycopg.connect(admin_dsn(deployed.primary.address, DB), autocommit=True) as conn:
        for run in guard.survey(conn)[2]:
            guard.cleanup(conn, run)


@pytest.fixture
def clean_start(deployed: Deployed) -> Iterator[None]:
    """No load-test rows before the test; none left by it either (whatever it asserted)."""
    remove_load_test_rows(deployed)
    yield
    remove_load_test_rows(deployed)


def plant_leftovers(deployed: Deployed) -> None:
    """What a killed run leaves once its deadline has passed, and what the earlier benchmark
    left (bench-NNNNN, type 'bench'): agents still 'running', a heartbeat, pending requests."""
    sql(deployed, "INSERT INTO agents (agent_id, name, type, state, metadata) VALUES"
                  " ('bgdb-loadtest-0dead0ff-00000', 'load test agent', 'bgdb-loadtest',"
                  "  'running', jsonb_build_object('bgdb_loadtest', jsonb_build_object("
                  "  'run', '0dead0ff', 'until', now() - interval '1 minute'))),"
                  " ('bench-00000', 'bench agent', 'bench', 'running', '{}')"
                  " ON CONFLICT (agent_id) DO NOTHING")
    for agent in ("bgdb-loadtest-0dead0ff-00000", "bench-00000"):
        sql(deployed, "INSERT INTO agent_heartbeats (agent_id, state) VALUES (%s, 'running')",
            [agent])
        sql(deployed, "INSERT INTO help_requests (request_id, user_id, content,"
                      " requesting_agent_id) VALUES (%s, %s, 'review', %s)",
            [f"lt-{uuid.uuid4().hex}", agent, agent])


def test_a_load_test_leaves_its_evidence_and_no_rows(deployed: Deployed, tmp_path: Path,
                                                     clean_start: None) -> None:
    pending_before = pending_help_requests(deployed)
    plant_leftovers(deployed)
    evidence = tmp_path / "load_evidence.json"
    t0 = time.monotonic()
    proc = bgdb(deployed, "loadtest", "--agents", "4", "--duration", "3",
                "--evidence", str(evidence), FLAG)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Leftovers first (both signatures), then its own rows: of every kind, counted.
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if "(left over from an earlier run)" in line] \
        == ["load test run 0dead0ff", "load test run legacy"], proc.stdout
    removed = [line for line in lines if ": removed " in line and "left over" not in line]
    assert len(removed) == 1, proc.stdout
    for table in ("agents", "help_requests", "agent_heartbeats", "agent_communications"):
        assert f" {table}" in removed[0], removed[0]
    assert load_test_rows(deployed) == {}
    assert sql(deployed, "SELECT count(*) FROM agents WHERE agent_id = 'bench-00000'") == [(0,)]
    assert pending_help_requests(deployed) == pending_before
    # The evidence stays: a run against the primary through PgBouncer, with figures.
    doc = json.loads(evidence.read_text())
    (run,) = doc["results"]
    assert run["where"] == f"{deployed.primary.address}:6432/{DB}"
    assert run["agents"] == 4 and run["operations"] > 0 and run["tps"] > 0
    # What the operator sees afterwards.
    status = bgdb(deployed, "status", "--json")
    assert status.returncode == 0, status.stderr
    (host,) = json.loads(status.stdout)["hosts"]
    assert [a for a in host["active_agents"] if a["agent_id"].startswith("bgdb-loadtest-")] == []
    assert host["health"]["help_requests_pending"] == pending_before
    print(f"load test of 4 agents x 3 s, cleanup included: {took:.1f} s; {removed[0]}")


def run_until_loaded(deployed: Deployed, evidence: Path) -> subprocess.Popen[str]:
    """A long load test in the background, returned once its agents have written help requests
    and heartbeats (the rows a stop must not leave behind)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bgdb", "loadtest", "--agents", "4", "--duration", "60",
         "--evidence", str(evidence), FLAG],
        cwd=REPO, env=env(deployed), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        rows = load_test_rows(deployed)
        if rows.get("help_requests", 0) >= 5 and rows.get("agent_heartbeats", 0) >= 5:
            return proc
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    out = proc.communicate(timeout=30)[0]
    pytest.fail(f"the load test wrote no help requests/heartbeats in time:\n{out[-3000:]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_load_test_removes_its_rows_and_keeps_the_evidence(
        deployed: Deployed, tmp_path: Path, clean_start: None, sig: signal.Signals) -> None:
    evidence = tmp_path / "load_evidence.json"
    evidence.write_text('{"results": [{"where": "earlier run"}]}\n')
    before = evidence.read_text()
    proc = run_until_loaded(deployed, evidence)
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + sig, out[-3000:]
    assert f"load test stopped by {sig.name}" in out
    assert "removed" in out and load_test_rows(deployed) == {}, out[-3000:]
    assert evidence.read_text() == before


def test_a_killed_load_test_is_removed_later(deployed: Deployed, tmp_path: Path,
                                             clean_start: None) -> None:
    proc = run_until_loaded(deployed, tmp_path / "load_evidence.json")
    os.killpg(proc.pid, signal.SIGKILL)  # nothing can clean up: its rows stay
    proc.communicate(timeout=30)
    left = load_test_rows(deployed)
    assert left.get("agents") == 4 and left.get("help_requests"), left
    # Until its deadline it may still be running: the next run waits for it (two at once
    # measure nothing) and says how to remove a killed one.
    refused = bgdb(deployed, "loadtest", "--agents", "2", "--duration", "1", FLAG)
    assert refused.returncode == 2
    assert "may still be running" in refused.stderr
    assert "`bgdb loadtest --cleanup`" in refused.stderr
    assert load_test_rows(deployed) == left
    # The operator who killed it removes it (past its deadline the next run would).
    cleaned = bgdb(deployed, "loadtest", "--cleanup")
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.startswith("load test run "), cleaned.stdout
    assert load_test_rows(deployed) == {}


def test_a_target_the_inventory_does_not_name_as_a_database_host_is_refused(
        deployed: Deployed, tmp_path: Path) -> None:
    node2 = deployed.node(2)  # in the inventory, but not a database host
    for address in (node2.address, "10.231.0.250"):  # (loopback etc.: the unit tests)
        proc = subprocess.run(
            [sys.executable, "bench/load_agents.py", "--agents", "2", "--duration", "1",
             "--target", f"pgbouncer=host={address} port=6432 dbname={DB}",
             "--evidence", str(tmp_path / "ev.json")],
            cwd=REPO, env=env(deployed), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr == (f"load test refused: load test target {address!r} is not a "
                               f"database host of the inventory: database hosts are "
                               f"{deployed.primary.name} ({deployed.primary.address})\n")
    assert not (tmp_path / "ev.json").exists()


def test_a_primary_holding_other_agents_needs_the_flag(deployed: Deployed, tmp_path: Path,
                                                       clean_start: None) -> None:
    foreign = f"lt-foreign-{uuid.uuid4().hex[:8]}"
    sql(deployed, "INSERT INTO agents (agent_id, state) VALUES (%s, 'running')", [foreign])
    try:
        (n,), = sql(deployed, "SELECT count(*) FROM agents")
        proc = bgdb(deployed, "loadtest", "--agents", "2", "--duration", "1",
                    "--evidence", str(tmp_path / "ev.json"))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        line, = proc.stderr.splitlines()
        assert line.startswith(f"load test refused: {deployed.primary.address}:6432/{DB} already "
                               f"holds data: {n} agent(s) that are not the load test's (e.g. ")
        assert line.endswith("pass --confirm-existing-data to load it anyway")
        # Refused before writing anything.
        assert load_test_rows(deployed) == {}
        assert not (tmp_path / "ev.json").exists()
    finally:
        sql(deployed, "DELETE FROM agents WHERE agent_id = %s", [foreign])
