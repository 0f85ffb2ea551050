"""Session fixtures that give integration tests real hosts: a sandbox lab, deployed once.

The lab is `test` (its own addresses, so a demo lab can stay up beside it). Teardown always runs,
also when a test fails or the run is interrupted (pytest runs finalizers on KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
import pytest

from deploy import secrets
from deploy.runner import DeployResult, run_deploy
from sandbox import hosts as sandbox_hosts
from sandbox import paths

LAB = os.environ.get("BGDB_TEST_LAB", "test")
KEEP = os.environ.get("BGDB_KEEP_LAB") == "1"  # leave the lab up after the run, for debugging


@dataclass
class Deployed:
    lab: sandbox_hosts.Lab
    first: DeployResult
    env: dict[str, str]

    @property
    def primary(self) -> sandbox_hosts.Host:
        return next(h for h in self.lab.hosts if "postgres_primary" in h.groups)

    def node(self, i: int) -> sandbox_hosts.Host:
        return self.lab.hosts[i - 1]

    def deploy(self, extra_data: str | None = None) -> DeployResult:
        env = dict(self.env)
        if extra_data:
            env["BGDB_EXTRA_DATA"] = extra_data
        return run_deploy(env)

    def ssh_config(self) -> Path:
        path = self.lab.dir / "ssh_config"
        if not path.exists():
            lines = []
            for h in self.lab.hosts:
                lines += [f"Host {h.address} {h.name}", f"  HostName {h.address}", "  User root",
                          f"  IdentityFile {self.lab.ssh_key}",
                          f"  UserKnownHostsFile {self.lab.known_hosts}",
                          "  StrictHostKeyChecking yes", ""]
            path.write_text("\n".join(lines))
        return path


def _claim_lab(base: str = LAB) -> tuple[str, IO[str]]:
    """A lab name no other live test session holds (an flock per name, released at exit), so
    concurrent runs on one machine never reboot each other's hosts."""
    paths.LABS.mkdir(parents=True, exist_ok=True)
    for i in range(paths.MAX_LABS - 1):
        name = base if i == 0 else f"{base}{i + 1}"
        lock = open(paths.LABS / f".{name}.lock", "w")  # noqa: SIM115 - held for the session
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return name, lock
    raise RuntimeError("every sandbox test lab is in use by another session")


TIMELINE_ENV = "BGDB_LAB_TIMELINE"  # a file the controller prints at the end (tests/conftest.py)


@contextlib.contextmanager
def timed(lab: str, what: str) -> Iterator[None]:
    """A lab's phase on the run's timeline: which labs were up, booting or deploying beside
    which (a lab's setup took 267 s in one CI run against ~100 s in others, unexplained)."""
    start = time.time()
    try:
        yield
    finally:
        if path := os.environ.get(TIMELINE_ENV):
            entry = {"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "lab": lab,
                     "what": what, "start": start, "end": time.time()}
            with open(path, "a") as f:  # one short line per append: no interleaving
                f.write(json.dumps(entry) + "\n")


@contextlib.contextmanager
def booted_lab(base: str, specs: Sequence[sandbox_hosts.HostSpec]) -> Iterator[sandbox_hosts.Lab]:
    """A lab no other session holds, booted; down afterwards unless BGDB_KEEP_LAB=1."""
    name, lock = _claim_lab(base)
    try:
        with timed(name, "up"):
            lab = sandbox_hosts.up(name, list(specs))
        try:
            with timed(name, "in use"):
                yield lab
        finally:
            if not KEEP:
                with timed(name, "down"):
                    sandbox_hosts.down(name)
    finally:
        lock.close()


@pytest.fixture(scope="session")
def sandbox_lab() -> Iterator[sandbox_hosts.Lab]:
    with booted_lab(LAB, sandbox_hosts.default_specs(3)) as lab:
        yield lab


@pytest.fixture(scope="session")
def deployed(sandbox_lab: sandbox_hosts.Lab) -> Deployed:
    env = {"BGDB_LAB": sandbox_lab.name}
    with timed(sandbox_lab.name, "first deploy"):
        result = run_deploy(env)
    if result.returncode != 0 or result.errors:
        pytest.fail(f"first deploy failed ({result.describe()}):\n{result.output[-6000:]}")
    return Deployed(sandbox_lab, result, env)


def admin_dsn(address: str, dbname: str = "postgres") -> str:
    ca = secrets.secrets_dir() / "ca" / "ca.crt"
    return psycopg.conninfo.make_conninfo(
        host=address, dbname=dbname, user="bgdb_admin", password=secrets.password("bgdb_admin"),
        sslmode="verify-full", sslrootcert=str(ca), connect_timeout=10)


@pytest.fixture(scope="session")
def pg_admin_dsn(request: pytest.FixtureRequest) -> str:
    """A superuser DSN on a real PostgreSQL: the deployed sandbox primary (or, for a developer's
    quick loop only, $BGDB_TEST_ADMIN_DSN)."""
    if os.environ.get("BGDB_TEST_ADMIN_DSN"):
        return os.environ["BGDB_TEST_ADMIN_DSN"]
    deployed: Deployed = request.getfixturevalue("deployed")
    return admin_dsn(deployed.primary.address)


@pytest.fixture
def scratch_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(pg_admin_dsn)
    params["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
