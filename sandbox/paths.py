"""Where the sandbox keeps its state, and the fixed facts of its network."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

# Kept outside the repo so a base image survives `git clean` and serves every checkout.
ROOT = Path(os.environ.get("BGDB_SANDBOX_ROOT", "/var/lib/bgdb-sandbox"))
IMAGES = ROOT / "images"
LABS = ROOT / "labs"
SSH_DIR = ROOT / "ssh"
ACNG_DIR = ROOT / "apt-cacher-ng"

BRIDGE = "bgdb0"
NETWORK = ipaddress.ip_network("10.231.0.0/24")
GATEWAY = ipaddress.ip_address("10.231.0.1")
APT_PROXY_PORT = 3142
HOSTS_PER_LAB = 20  # lab k owns addresses 10.231.0.(10 + 20k) .. +19
MAX_LABS = 12

CGROUP_V1 = Path("/sys/fs/cgroup/systemd/bgdb-sandbox")
CGROUP_V2 = Path("/sys/fs/cgroup/unified/bgdb-sandbox")
NSPAWN_RUNTIME = Path("/run/systemd/nspawn")


def host_address(lab_index: int, host_index: int) -> ipaddress.IPv4Address:
    """Host i (1-based) of lab k."""
    if not 1 <= host_index < HOSTS_PER_LAB:
        raise ValueError(f"a lab holds at most {HOSTS_PER_LAB - 1} hosts, not {host_index}")
    return ipaddress.IPv4Address(int(GATEWAY) + 9 + HOSTS_PER_LAB * lab_index + host_index)
