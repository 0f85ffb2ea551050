"""The shell commands deploy/ha.py runs on the members."""

from __future__ import annotations

from deploy import ha


def test_etcd_restart_waits_for_health() -> None:
    wait = ha.etcd_health_wait("10.0.0.2", timeout=5)
    # etcd's /health answers 503 until the member has a raft leader: curl -f fails on it
    assert "curl -sf" in wait and "http://10.0.0.2:2381/health" in wait and "seq 5" in wait
    assert wait.endswith("exit 1")
