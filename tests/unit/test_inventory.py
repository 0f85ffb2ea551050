"""A bad setting stops `pyinfra inventory.py deploy.py` before any host is contacted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).with_name("pyinfra")


def run_pyinfra(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                               float]:
    hosts = tmp_path / "hosts.json"
    # 10.231.0.254 is in the sandbox range and never assigned: a connection would hang, not fail.
    hosts.write_text(json.dumps({"hosts": [{
        "name": "db", "address": "10.231.0.254", "groups": ["postgres_primary"],
        "data": {"postgres_allowed_cidrs": ["10.0.0.0/24"]}}]}))
    started = time.monotonic()
    proc = subprocess.run([str(PYINFRA), "-y", "inventory.py", "deploy.py"], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "BGDB_HOSTS_FILE": str(hosts),
                               "BGDB_SECRETS_DIR": str(tmp_path / "secrets"), **env})
    return proc, time.monotonic() - started


@pytest.mark.parametrize(("env", "message"), [
    ({"POSTGRESQL_PORT": "99999"},
     "settings error: app_port = '99999' (from POSTGRESQL_PORT): expected an integer 1-65535"),
    ({"BGDB_EXTRA_DATA": json.dumps({"postgres_allowed_cidrs": ["10.0.0.0/33"]})},
     "settings error: postgres_allowed_cidrs = '10.0.0.0/33' (from BGDB_EXTRA_DATA): not a valid "
     "CIDR"),
    ({"BGDB_EXTRA_DATA": json.dumps({"postgres_allowed_cidrs": []})},
     "settings error: postgres_allowed_cidrs = [] (from BGDB_EXTRA_DATA): expected at least one "
     "CIDR"),
    ({"POSTGRESQL_SSL_MODE": "sometimes"},
     "settings error: app_ssl_mode = 'sometimes' (from POSTGRESQL_SSL_MODE): expected one of"),
    ({"POSTGRESQL_POOL_SIZE": "0"},
     "settings error: app_pool_size = '0' (from POSTGRESQL_POOL_SIZE): expected an integer"),
    ({"BGDB_EXTRA_DATA": json.dumps({"postgres_memory_mb": 2048,
                                     "postgres_overrides": {"shared_buffers": "4GB"}})},
     "settings error: postgres_overrides.shared_buffers = '4GB': over 80% of the host's 2GB RAM"),
    ({"BGDB_EXTRA_DATA": json.dumps({"postgres_ssl_cert_file": "/nonexistent/server.crt"})},
     "settings error: postgres_ssl_cert_file = '/nonexistent/server.crt' (from BGDB_EXTRA_DATA): "
     "file does not exist"),
])
def test_bad_setting_fails_before_connecting(tmp_path: Path, env: dict[str, str],
                                             message: str) -> None:
    proc, seconds = run_pyinfra(tmp_path, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("settings error")] \
        == [proc.stderr.strip().splitlines()[-1]], "the error is one line"
    assert "Connecting to hosts" not in proc.stdout
    assert seconds < 30
