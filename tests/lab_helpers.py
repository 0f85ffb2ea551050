"""What the tests on users' kind of hosts share (their lab: sandbox_fixtures.booted_lab): the
README's hosts file; the seed's client variables; waiting for a condition; counting an
agent's acknowledged writes against the rows stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from background_agents.agent_api import AgentClient
from background_agents.config import AdapterConfig
from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter
from deploy import secrets
from sandbox import hosts as sandbox_hosts
from tests.sandbox_fixtures import admin_dsn

REPO = Path(__file__).resolve().parents[1]
CONTROLLER = "10.231.0.1/32"  # this machine, as the lab hosts see it
APP_DB, APP_USER, PGBOUNCER_PORT = "background_agents", "bg_agents_user", 6432


def write_hosts_file(lab: sandbox_hosts.Lab, path: Path, data: Mapping[str, Any]) -> None:
    """The README's hosts file: an SSH section (the non-root login `admin`, host keys checked)
    and the hosts with their own data only."""
    path.write_text(json.dumps({
        "ssh": {"user": sandbox_hosts.ADMIN_USER, "key": lab.ssh_key,
                "known_hosts": lab.known_hosts},
        "hosts": [{"name": h.name, "address": h.address, "groups": h.groups, "data": dict(data)}
                  for h in lab.hosts],
    }, indent=2) + "\n")


def admin_ssh(lab: sandbox_hosts.Lab, address: str, command: str,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`command` on a lab host as the operator runs it: the login `admin` over SSH, host key
    checked (sudo in the command for root)."""
    return subprocess.run(
        ["ssh", "-i", lab.ssh_key, "-o", f"UserKnownHostsFile={lab.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
         f"{sandbox_hosts.ADMIN_USER}@{address}", command],
        capture_output=True, text=True, timeout=timeout)


def agent_config(address: str, pool_size: int, timeout: int) -> AdapterConfig:
    """The seed's variables: PgBouncer's port, verify-full against the bundle's CA."""
    return AdapterConfig.from_env({
        "POSTGRESQL_HOST": address, "POSTGRESQL_PORT": str(PGBOUNCER_PORT),
        "POSTGRESQL_DATABASE": APP_DB, "POSTGRESQL_USER": APP_USER,
        "POSTGRESQL_PASSWORD": secrets.password(APP_USER),
        "POSTGRESQL_SSL_MODE": "verify-full",
        "POSTGRESQL_SSL_ROOT_CERT": str(secrets.secrets_dir() / "ca" / "ca.crt"),
        "POSTGRESQL_POOL_SIZE": str(pool_size), "POSTGRESQL_TIMEOUT": str(timeout)})


def bouncer_dsn(address: str, user: str = APP_USER) -> str:
    """A role (the application's by default) through PgBouncer, as a plain DSN."""
    return psycopg.conninfo.make_conninfo(
        host=address, port=PGBOUNCER_PORT, dbname=APP_DB, user=user,
        password=secrets.password(user), sslmode="verify-full",
        sslrootcert=str(secrets.secrets_dir() / "ca" / "ca.crt"))


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> float:
    """Seconds until check() held; an AssertionError naming `what` after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)
    return time.monotonic() - started


@dataclass
class Ack:
    """One write an agent saw acknowledged: writer n's seq-th event, sent and answered at."""
    writer: int
    seq: int
    started: float
    done: float


@dataclass
class Tally:
    lost: list[tuple[int, int]]
    duplicated: dict[tuple[int, int], int]


def tally(address: str, agent_id: str, acks: Sequence[Ack], delete: bool = False) -> Tally:
    """The agent's acknowledged events against the rows stored (read as the admin; removed
    afterwards with `delete`, so the test leaves no ghost agent behind)."""
    with psycopg.connect(admin_dsn(address, APP_DB)) as conn:
        rows = conn.execute(
            "SELECT (event_data->>'writer')::int, (event_data->>'seq')::int, count(*) "
            "FROM system_events WHERE agent_id = %s GROUP BY 1, 2", [agent_id]).fetchall()
        if delete:
            conn.execute("DELETE FROM system_events WHERE agent_id = %s", [agent_id])
            conn.execute("DELETE FROM agents WHERE agent_id = %s", [agent_id])
    stored = {(w, s): c for w, s, c in rows}
    return Tally([(a.writer, a.seq) for a in acks if (a.writer, a.seq) not in stored],
                 {k: c for k, c in stored.items() if c > 1})


def bgdb_check(env: Mapping[str, str], tmp_path: Path, *pytest_args: str
               ) -> tuple[int, dict[str, str], int, str]:
    """`bgdb check` as users run it: (exit status, {failed check: message}, passed, output)."""
    junit, report = tmp_path / "readiness.xml", tmp_path / "readiness.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bgdb", "check", "--", f"--junitxml={junit}",
         f"--readiness-report={report}", *pytest_args],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    failed, passed = {}, 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            failed[case.get("name", "?")] = problem.get("message", "")
        elif case.find("skipped") is None:
            passed += 1
    return proc.returncode, failed, passed, proc.stdout


@dataclass
class Load:
    """What the writers of one agent saw: its id, the acknowledged writes, the failures."""
    agent_id: str
    acks: list[Ack] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)

    def pause_after(self, t0: float) -> tuple[float, float]:
        """The longest pause between two acknowledgements after t0 (t0 included), as seconds
        after t0 of its start and end: backends may still commit for a moment after a crash,
        so that pause is the outage."""
        done = sorted([t0] + [a.done for a in self.acks if a.done >= t0])
        start, end = max(zip(done, done[1:], strict=False), key=lambda g: g[1] - g[0])
        return start - t0, end - t0


@contextlib.asynccontextmanager
async def agent_load(config: AdapterConfig, kind: str, writers: int) -> AsyncIterator[Load]:
    """`writers` tasks of one registered agent log numbered events through the project's
    client; the block runs after 2 s of steady load, the writers stop when it ends."""
    load = Load(f"{kind}-{uuid.uuid4().hex[:8]}")
    stop = asyncio.Event()
    async with PostgreSQLAdapter(config) as db:
        client = AgentClient(db, load.agent_id, agent_type=f"{kind}-test")
        await client.register()

        async def writer(n: int) -> None:
            seq = 0
            while not stop.is_set():
                seq += 1
                started = time.time()
                await client.log_event(f"{kind}_probe", {"writer": n, "seq": seq})
                load.acks.append(Ack(n, seq, started, time.time()))

        tasks = [asyncio.create_task(writer(n)) for n in range(writers)]
        await asyncio.sleep(2.0)
        try:
            yield load
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            load.failures = [r for r in results if isinstance(r, BaseException)]
