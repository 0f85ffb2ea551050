"""The bridge on the machine, one network namespace + veth per host, and the apt proxy."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from ipaddress import IPv4Address

from sandbox import paths
from sandbox.run import SandboxError, ok, run, running


def ensure_bridge() -> None:
    if not ok(["ip", "link", "show", paths.BRIDGE]):
        run(["ip", "link", "add", paths.BRIDGE, "type", "bridge"])
    prefix = f"{paths.GATEWAY}/{paths.NETWORK.prefixlen}"
    if prefix not in run(["ip", "-o", "addr", "show", "dev", paths.BRIDGE]):
        run(["ip", "addr", "add", prefix, "dev", paths.BRIDGE])
    run(["ip", "link", "set", paths.BRIDGE, "up"])


def remove_bridge() -> None:
    if ok(["ip", "link", "show", paths.BRIDGE]):
        run(["ip", "link", "del", paths.BRIDGE])


def netns_name(host: str) -> str:
    return f"bgdb-{host}"


def veth_name(address: IPv4Address) -> str:
    return f"bgv{str(address).rsplit('.', 1)[1]}"  # interface names are limited to 15 chars


def add_host_network(host: str, address: IPv4Address) -> str:
    """Create the host's netns with eth0 = address, wired to the bridge; return the netns path."""
    ns, veth = netns_name(host), veth_name(address)
    # A torn-down host with this address had another MAC: a stale neighbour entry on the bridge
    # would blackhole traffic to the new host for half a minute.
    run(["ip", "neigh", "flush", "to", str(address)], check=False)
    run(["ip", "netns", "add", ns])
    # A MAC derived from the address keeps every neighbour cache right when a host is re-created.
    mac = "02:42:" + ":".join(f"{int(b):02x}" for b in str(address).split("."))
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
         "address", mac])
    run(["ip", "link", "set", veth, "master", paths.BRIDGE, "up"])
    cidr = f"{address}/{paths.NETWORK.prefixlen}"
    run(["ip", "-n", ns, "addr", "add", cidr, "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "route", "add", "default", "via", str(paths.GATEWAY)])
    return f"/run/netns/{ns}"


def remove_host_network(host: str, address: IPv4Address | None) -> None:
    ns = netns_name(host)
    if ok(["ip", "netns", "pids", ns]):
        for pid in run(["ip", "netns", "pids", ns], check=False).split():
            _kill(int(pid))
        run(["ip", "netns", "del", ns], check=False)
    if address is not None and ok(["ip", "link", "show", veth_name(address)]):
        run(["ip", "link", "del", veth_name(address)], check=False)


def stale_namespaces() -> list[str]:
    """Our namespaces that no live lab claims (left by a crashed run)."""
    out = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith("bgdb-")]


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --- apt proxy ------------------------------------------------------------------------------

def proxy_url() -> str:
    return f"http://{paths.GATEWAY}:{paths.APT_PROXY_PORT}"


def ensure_apt_proxy() -> None:
    """apt-cacher-ng on the bridge address, own config (no Remap to unreachable mirrors)."""
    if _port_open(str(paths.GATEWAY), paths.APT_PROXY_PORT):
        return
    conf = paths.ACNG_DIR / "conf"
    cache = paths.ACNG_DIR / "cache"
    for d in (conf, cache, paths.ACNG_DIR / "log"):
        d.mkdir(parents=True, exist_ok=True)
    (conf / "acng.conf").write_text(
        f"""CacheDir: {cache}
LogDir: {paths.ACNG_DIR / 'log'}
SupportDir: /usr/lib/apt-cacher-ng
Port: {paths.APT_PROXY_PORT}
BindAddress: {paths.GATEWAY}
PidFile: {paths.ACNG_DIR / 'acng.pid'}
SocketPath: {paths.ACNG_DIR / 'acng.socket'}
ExThreshold: 4
VfilePatternEx: ^/(by-hash|InRelease|Release)
PassThroughPattern: .*
"""
    )
    subprocess.Popen(
        ["apt-cacher-ng", "-c", str(conf), "ForeGround=1"],
        stdout=subprocess.DEVNULL,
        stderr=open(paths.ACNG_DIR / "log" / "stderr.log", "ab"),  # noqa: SIM115
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while not _port_open(str(paths.GATEWAY), paths.APT_PROXY_PORT):
        if time.monotonic() > deadline:
            raise SandboxError(
                f"apt-cacher-ng did not listen on {proxy_url()}; see {paths.ACNG_DIR}/log")
        time.sleep(0.2)


def stop_apt_proxy() -> None:
    """Stopped and gone before returning: `ensure_apt_proxy` trusts an open port, so a proxy
    still exiting when the next lab boots could be taken as running and leave that lab's apt
    without a proxy."""
    pidfile = paths.ACNG_DIR / "acng.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        pidfile.unlink(missing_ok=True)
    deadline = time.monotonic() + 10
    while pids := _apt_proxy_pids():
        if time.monotonic() > deadline:
            raise SandboxError(f"apt-cacher-ng (pids {pids}) outlived SIGKILL for 10 s")
        for pid in pids:
            _kill(pid)
        time.sleep(0.1)


def _apt_proxy_pids() -> list[int]:
    out = run(["pgrep", "-f", f"apt-cacher-ng -c {paths.ACNG_DIR}"], check=False)
    # A killed child not yet reaped by us is a zombie: gone for the port, still listed.
    return [int(pid) for pid in out.split() if running(int(pid))]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(host, port):
            return True
        time.sleep(0.2)
    return False
