"""Shared by the backup and maintenance tests: commands on the sandbox hosts, SQL as postgres,
status files, and waiting for a condition."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.sandbox_fixtures import Deployed

REPO = Path(__file__).resolve().parents[3]
STATUS_DIR = "/var/lib/bgdb/status"
UNIT = "postgresql@15-main"
DATA_DIR = "/var/lib/postgresql/15/main"


def ssh(deployed: Deployed, command: str, host: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(deployed.ssh_config()),
                           host or deployed.primary.address, f"cd / && {command}"],
                          capture_output=True, text=True, timeout=timeout)


def must(deployed: Deployed, command: str, host: str | None = None, timeout: float = 120) -> str:
    out = ssh(deployed, command, host, timeout)
    assert out.returncode == 0, f"{command}: rc={out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def sql(deployed: Deployed, query: str, db: str = "background_agents",
        host: str | None = None) -> str:
    """The result of a query run as postgres on the host (tab-separated rows)."""
    cmd = (f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -F $'\\t' -d {db} "
           f"-c {shlex.quote(query)}")
    return must(deployed, cmd, host).strip()


def start_unit(deployed: Deployed, unit: str) -> subprocess.CompletedProcess[str]:
    """Trigger a job's service once and wait for it (oneshot)."""
    return ssh(deployed, f"systemctl start {unit}.service", timeout=600)


def status(deployed: Deployed, name: str) -> dict[str, Any]:
    return dict(json.loads(must(deployed, f"cat {STATUS_DIR}/{name}.json")))


def journal(deployed: Deployed, unit: str) -> str:
    return ssh(deployed, f"journalctl -u {unit} -n 40 --no-pager").stdout


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60,
             every: float = 1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def restore_command(deployed: Deployed, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's restore command, as documented in the README."""
    return subprocess.run([sys.executable, "-m", "bgdb.restore", "--yes", *args], cwd=REPO,
                          env={**os.environ, **deployed.env}, capture_output=True, text=True,
                          timeout=900)
