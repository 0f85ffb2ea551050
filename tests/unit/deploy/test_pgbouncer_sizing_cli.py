"""The PgBouncer sizing guard stops `pyinfra inventory.py deploy.py` before contacting a host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PYINFRA = Path(sys.executable).with_name("pyinfra")


def test_pool_500_against_max_connections_100_fails_before_connecting(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.json"
    # 10.231.0.254 is in the sandbox range and never assigned: a connection would hang, not fail.
    hosts.write_text(json.dumps({"hosts": [{
        "name": "db", "address": "10.231.0.254", "groups": ["postgres_primary"],
        "data": {"postgres_allowed_cidrs": ["10.0.0.0/24"]}}]}))
    env = {**os.environ, "BGDB_HOSTS_FILE": str(hosts), "BGDB_SECRETS_DIR": str(tmp_path / "s"),
           "POSTGRESQL_POOL_SIZE": "500",
           "BGDB_EXTRA_DATA": json.dumps({"postgres_overrides": {"max_connections": "100"}})}
    started = time.monotonic()
    proc = subprocess.run([str(PYINFRA), "-y", "inventory.py", "deploy.py"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "settings error: pgbouncer_default_pool_size = 500 (from POSTGRESQL_POOL_SIZE): "
        "500 pool + 5 reserve exceed pgbouncer_max_db_connections 50 (max_connections 100): "
        "the pool could never fill")
    assert "Connecting to hosts" not in proc.stdout
    assert time.monotonic() - started < 30
