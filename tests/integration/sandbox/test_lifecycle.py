"""The sandbox recovers from a crashed run and `down` leaves no trace of a lab."""

from __future__ import annotations

import os
import signal
import subprocess

from sandbox import hosts, paths


def _traces(lab: str) -> list[str]:
    others = {p.name for p in paths.LABS.iterdir() if p.is_dir() and p.name != lab}
    return [t for t in hosts.leftovers(others) if lab in t]


def _ssh(lab: hosts.Lab, command: str) -> str:
    host = lab.hosts[0]
    return subprocess.run(
        ["ssh", "-i", lab.ssh_key, "-o", f"UserKnownHostsFile={lab.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{host.address}",
         command], capture_output=True, text=True, timeout=30).stdout.strip()


def test_up_after_a_crash_then_down_leaves_nothing() -> None:
    lab_name = f"crash{os.getpid() % 10000}"
    try:
        lab = hosts.up(lab_name, hosts.default_specs(1))
        assert _ssh(lab, "systemctl is-system-running") in ("running", "degraded")
        # A crashed run: the supervisor dies by SIGKILL, which leaves the container running.
        pid = lab.hosts[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert _traces(lab_name), "nothing left after a crash? the crash was not simulated"
        again = hosts.up(lab_name, hosts.default_specs(1))  # cleans the stale lab first
        assert _ssh(again, "hostname") == f"{lab_name}-db1"
    finally:
        hosts.down(lab_name)
    assert _traces(lab_name) == []
    assert not (paths.LABS / lab_name).exists()
