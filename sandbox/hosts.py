"""Booting and tearing down the hosts of one lab (a named set of sandbox hosts)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from ipaddress import IPv4Address
from pathlib import Path

from sandbox import image, network, paths
from sandbox.run import SandboxError, ok, run, running

# A non-root login with sudo on every host, as on real hosts (the README's hosts file).
ADMIN_USER = "admin"


@dataclass(frozen=True)
class HostSpec:
    name: str
    groups: tuple[str, ...] = ()
    release: str = image.DEFAULT_RELEASE  # Debian 11, 12 or 13


@dataclass
class Host:
    name: str
    address: str
    groups: list[str] = field(default_factory=list)
    pid: int | None = None  # the systemd-nspawn supervisor
    release: str = image.DEFAULT_RELEASE


@dataclass
class Lab:
    name: str
    index: int
    hosts: list[Host]
    ssh_key: str
    known_hosts: str

    @property
    def dir(self) -> Path:
        return paths.LABS / self.name

    @property
    def inventory_file(self) -> Path:
        return self.dir / "inventory.json"

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.inventory_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(self.inventory_file)

    @classmethod
    def load(cls, name: str) -> Lab | None:
        f = paths.LABS / name / "inventory.json"
        if not f.exists():
            return None
        data = json.loads(f.read_text())
        # Labs are machine-wide: one written by another version of this code may carry fields
        # this one does not know (e.g. a host's release); what is read here is only its index.
        known_host = {f.name for f in fields(Host)}
        data["hosts"] = [Host(**{k: v for k, v in h.items() if k in known_host})
                         for h in data["hosts"]]
        known_lab = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known_lab})


def default_specs(count: int, release: str = image.DEFAULT_RELEASE) -> list[HostSpec]:
    """Host 1 is the primary (and scrape target); the others are plain hosts a test can give a
    role (a client inside or outside the allowed CIDRs, a replica)."""
    if count < 1:
        raise SandboxError("a lab needs at least one host")
    image.suite_of(release)  # an unknown release fails here, before anything is booted
    specs = [HostSpec("db1", ("postgres_primary", "monitoring"), release)]
    specs += [HostSpec(f"node{i}", (), release) for i in range(2, count + 1)]
    return specs


def up(lab_name: str, specs: list[HostSpec]) -> Lab:
    """Boot the lab's hosts from scratch (cleaning whatever a crashed run left) and wait for ssh."""
    _check_environment()
    with _shared_lock():
        down(lab_name)
        network.ensure_bridge()
        network.ensure_apt_proxy()
        bases = {s.release: image.ensure_image(network.proxy_url(), s.release) for s in specs}
        key = _ensure_ssh_key()
        index = _free_lab_index(lab_name)
        hosts = [
            Host(f"{lab_name}-{s.name}", str(paths.host_address(index, i)), list(s.groups),
                 release=s.release)
            for i, s in enumerate(specs, start=1)
        ]
        lab = Lab(lab_name, index, hosts, str(key), str(paths.LABS / lab_name / "known_hosts"))
        # Saved before booting (and before the lock is released): `down` finds everything even
        # if boot fails half-way, and no other lab takes this index or tears the bridge down.
        lab.save()
    _write_known_hosts(lab, {h.name: image.host_key(bases[h.release]) for h in hosts})
    try:
        for host in hosts:
            host.pid = _boot(lab, host, bases[host.release], key)
            lab.save()
        for host in hosts:
            _wait_ssh(lab, host)
    except BaseException:
        down(lab_name)
        raise
    return lab


def poweroff(lab_name: str, host_name: str) -> None:
    """Power one host off as `machinectl poweroff` does (a clean shutdown: SIGTERM to nspawn);
    its disk (the overlay) and its network stay for `boot`."""
    lab = _load(lab_name)
    host = next(h for h in lab.hosts if h.name == host_name)
    _stop(host.name, host.pid)
    host.pid = None
    lab.save()


def boot(lab_name: str, host_name: str) -> None:
    """Boot a powered-off host again from its own disk, and wait for it."""
    lab = _load(lab_name)
    host = next(h for h in lab.hosts if h.name == host_name)
    if host.pid is not None and running(host.pid):
        raise SandboxError(f"{host_name} is running")
    base = image.ensure_image(network.proxy_url(), host.release)
    host.pid = _boot(lab, host, base, _ensure_ssh_key())
    lab.save()
    _wait_ssh(lab, host)


def _load(lab_name: str) -> Lab:
    lab = Lab.load(lab_name)
    if lab is None:
        raise SandboxError(f"lab {lab_name} is not up")
    return lab


def down(lab_name: str) -> None:
    """Stop every host of the lab and remove its mounts, namespaces, cgroups and files."""
    lab = Lab.load(lab_name)
    lab_dir = paths.LABS / lab_name
    hosts = lab.hosts if lab else []
    names = {h.name for h in hosts} | _dirs(lab_dir / "hosts")
    # Pulled, not powered off: everything the hosts hold is deleted next, and a clean poweroff
    # of a whole HA cluster at once took 20 s (a Patroni leader waiting for an etcd that is
    # stopping too). `poweroff` stays the clean one the tests strike hosts with.
    for name in sorted(names):
        host = next((h for h in hosts if h.name == name), None)
        _kill(name, host.pid if host else None)
        network.remove_host_network(name, IPv4Address(host.address) if host else None)
        _unmount_tree(lab_dir / "hosts" / name)
        _remove_cgroup(name)
    shutil.rmtree(lab_dir, ignore_errors=True)
    with _shared_lock():
        if not _dirs(paths.LABS):
            _teardown_shared()


def down_all() -> None:
    for name in sorted(_dirs(paths.LABS)):
        down(name)
    # Anything named like ours that no lab claims any more (a lab dir deleted by hand).
    for ns in network.stale_namespaces():
        network.remove_host_network(ns.removeprefix("bgdb-"), None)
    with _shared_lock():
        _teardown_shared()


def leftovers(keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Traces of sandbox hosts outside the labs in `keep`: namespaces, mounts, cgroups,
    processes, and (when no lab is kept) the bridge and the apt proxy."""
    found = []
    keep_prefixes = tuple(f"bgdb-{lab}-" for lab in keep)
    found += [f"netns {ns}" for ns in network.stale_namespaces()
              if not ns.startswith(keep_prefixes)]
    keep_dirs = tuple(str(paths.LABS / lab) + "/" for lab in keep)
    for line in Path("/proc/mounts").read_text().splitlines():
        mount = line.split()[1]
        if mount.startswith(str(paths.LABS)) and not mount.startswith(keep_dirs):
            found.append(f"mount {mount}")
    for cg in (paths.CGROUP_V1, paths.CGROUP_V2):
        for name in _dirs(cg):
            if not name.startswith(tuple(f"{lab}-" for lab in keep)):
                procs = len(_cgroup_pids(name))
                found.append(f"cgroup {cg / name}" + (f" ({procs} processes)" if procs else ""))
    if not keep & _dirs(paths.LABS):
        if ok(["ip", "link", "show", paths.BRIDGE]):
            found.append(f"bridge {paths.BRIDGE}")
        if (paths.ACNG_DIR / "acng.pid").exists():
            found.append("apt-cacher-ng")
    return found


_lock_depth = 0


@contextlib.contextmanager
def _shared_lock() -> Iterator[None]:
    """Labs come and go concurrently (two test workers, several checkouts): the bridge, the apt
    proxy, the base image and the choice of a lab's addresses are set up, and torn down when the
    last lab goes, under one machine-wide lock (re-entrant: `up` calls `down`)."""
    global _lock_depth
    if _lock_depth:
        yield
        return
    paths.ROOT.mkdir(parents=True, exist_ok=True)
    with open(paths.ROOT / ".shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1


def _teardown_shared() -> None:
    network.stop_apt_proxy()
    network.remove_bridge()
    for cg in (paths.CGROUP_V1, paths.CGROUP_V2):
        _rmdir_tree(cg)
    if _is_mountpoint(paths.NSPAWN_RUNTIME):
        run(["umount", "-l", str(paths.NSPAWN_RUNTIME)], check=False)


# --- booting ----------------------------------------------------------------------------------

def _check_environment() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (network namespaces, mounts, cgroups)")
    for tool in ("systemd-nspawn", "mmdebstrap", "apt-cacher-ng", "ip", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise SandboxError(f"{tool} not found: run `make setup` first")
    # Every container's systemd takes inotify instances from root's machine-wide budget
    # (default 128): a few labs at once exhaust it and PID 1 dies at boot ("Too many open
    # files"). Raise the limits on this machine only when they are lower.
    for name, minimum in (("max_user_instances", 8192), ("max_user_watches", 524288)):
        knob = Path("/proc/sys/fs/inotify") / name
        if int(knob.read_text()) < minimum:
            knob.write_text(str(minimum))


def _boot(lab: Lab, host: Host, base: Path, key: Path) -> int:
    hdir = lab.dir / "hosts" / host.name
    upper, work, root = hdir / "upper", hdir / "work", hdir / "root"
    for d in (upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    if not _is_mountpoint(root):  # a host booted again (`boot`) keeps its disk and network
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={base},upperdir={upper},workdir={work}", str(root)])
    _personalize(lab, host, root, key)
    netns = f"/run/netns/{network.netns_name(host.name)}"
    if not Path(netns).exists():
        netns = network.add_host_network(host.name, IPv4Address(host.address))

    # nspawn wants its propagation directory on a tmpfs; /run here is not one.
    paths.NSPAWN_RUNTIME.mkdir(parents=True, exist_ok=True)
    if not _is_mountpoint(paths.NSPAWN_RUNTIME):
        run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(paths.NSPAWN_RUNTIME)])
    # No systemd on the machine: give each container a cgroup of its own, then --keep-unit.
    # CAP_NET_ADMIN only reaches the host's own netns; the firewall deploy needs it for nft.
    cgroups = [cg / host.name for cg in (paths.CGROUP_V1, paths.CGROUP_V2)]
    for cg in cgroups:
        cg.mkdir(parents=True, exist_ok=True)
    join = "; ".join(f"echo $$ > {cg}/cgroup.procs" for cg in cgroups)
    cmd = (
        f"{join}; exec systemd-nspawn --boot --quiet --register=no --keep-unit "
        f"--machine={host.name} --hostname={host.name} --directory={root} "
        f"--network-namespace-path={netns} --resolv-conf=off --timezone=off --link-journal=no "
        f"--console=read-only --capability=CAP_NET_ADMIN"
    )
    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
    log = open(hdir / "console.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc.pid


def _personalize(lab: Lab, host: Host, root: Path, key: Path) -> None:
    (root / "etc/hostname").write_text(host.name + "\n")
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines += [f"{h.address} {h.name}" for h in lab.hosts]
    (root / "etc/hosts").write_text("\n".join(lines) + "\n")
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    (ssh / "authorized_keys").chmod(0o600)
    _add_admin(root, key)


def _add_admin(root: Path, key: Path) -> None:
    """The login a real host gives its operator: ADMIN_USER, same key, passwordless sudo."""
    if f"\n{ADMIN_USER}:" not in "\n" + (root / "etc/passwd").read_text():
        run(["useradd", "--root", str(root), "--create-home", "--shell", "/bin/bash",
             "--groups", "sudo", ADMIN_USER])
    sudoers = root / "etc/sudoers.d/90-sandbox-admin"
    sudoers.write_text(f"{ADMIN_USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    home = root / "home" / ADMIN_USER
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    (ssh / "authorized_keys").chmod(0o600)
    ids = (root / "etc/passwd").read_text().split(f"\n{ADMIN_USER}:", 1)[-1].split(":")
    uid, gid = int(ids[1]), int(ids[2])
    for path in (home, ssh, ssh / "authorized_keys"):
        os.chown(path, uid, gid)


def _wait_ssh(lab: Lab, host: Host, timeout: float = 60) -> None:
    """Wait until systemd says the boot is over: an open ssh port alone races the rest of the
    boot (sshd restarting, apt/dpkg locks)."""
    log = lab.dir / "hosts" / host.name / "console.log"
    if not network.wait_port(host.address, 22, timeout):
        raise SandboxError(f"{host.name} ({host.address}) did not open ssh in {timeout:.0f}s; "
                           f"console:\n{log.read_text(errors='replace')[-2000:]}")
    state = run(["ssh", "-i", lab.ssh_key, "-o", f"UserKnownHostsFile={lab.known_hosts}",
                 "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                 "-o", "ConnectTimeout=10", f"root@{host.address}",
                 f"timeout {int(timeout)} systemctl is-system-running --wait"], check=False).strip()
    if state not in ("running", "degraded"):
        raise SandboxError(f"{host.name} did not finish booting (systemd: {state or 'no answer'})")


def _ensure_ssh_key() -> Path:
    key = paths.SSH_DIR / "id_ed25519"
    if not key.exists():
        paths.SSH_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bgdb-sandbox", "-f", str(key)])
    return key


def _write_known_hosts(lab: Lab, host_keys: dict[str, str]) -> None:
    lines = [f"{h.address},{h.name} ssh-ed25519 {host_keys[h.name]}" for h in lab.hosts]
    Path(lab.known_hosts).write_text("\n".join(lines) + "\n")


def _free_lab_index(lab_name: str) -> int:
    used = set()
    for other in _dirs(paths.LABS) - {lab_name}:
        other_lab = Lab.load(other)
        if other_lab:
            used.add(other_lab.index)
    if lab_name == "sbx":  # the demo lab keeps the first addresses (10.231.0.11, ...)
        if 0 in used:
            raise SandboxError("lab index 0 is taken")
        return 0
    for i in range(1, paths.MAX_LABS):
        if i not in used:
            return i
    raise SandboxError(f"all {paths.MAX_LABS} labs are in use: run `python -m sandbox down --all`")


# --- stopping ---------------------------------------------------------------------------------

def _stop(name: str, pid: int | None) -> None:
    """SIGTERM to nspawn powers the container off cleanly; SIGKILL on nspawn would leave it
    running, so on timeout we kill every process in the container's cgroup instead."""
    if pid is not None and running(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    _kill(name, pid)


def _kill(name: str, pid: int | None) -> None:
    """Every process in the container's cgroup killed (its init included: nspawn then exits),
    then nspawn itself if it is still there."""
    for _ in range(3):
        procs = _cgroup_pids(name)
        if not procs:
            break
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        time.sleep(0.3)
    deadline = time.monotonic() + 3
    while pid is not None and running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid is not None and running(pid):
        os.kill(pid, signal.SIGKILL)


def _cgroup_pids(name: str) -> list[int]:
    pids: set[int] = set()
    for base in (paths.CGROUP_V1 / name, paths.CGROUP_V2 / name):
        for d in _cgroup_dirs(base):
            # A scope can go away between the walk and the read (its last process exited).
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
    return sorted(pids)


def _cgroup_dirs(base: Path) -> list[Path]:
    """Every directory of a cgroup tree, parents first. The container's processes exit while we
    walk, and systemd removes their scopes: a directory that vanishes is skipped, not an error
    (pathlib's rglob raised FileNotFoundError on one in CI)."""
    found: list[Path] = []
    for root, _dirs, _files in os.walk(base, onerror=lambda _e: None):
        found.append(Path(root))
    return found


def _remove_cgroup(name: str) -> None:
    for base in (paths.CGROUP_V1 / name, paths.CGROUP_V2 / name):
        _rmdir_tree(base)


def _rmdir_tree(path: Path) -> None:
    """cgroup directories are removed with rmdir, deepest first (their files cannot be deleted)."""
    if not path.exists():
        return
    for d in sorted(_cgroup_dirs(path)[1:], key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def _unmount_tree(hdir: Path) -> None:
    if not hdir.exists():
        return
    # Mounts nspawn made below the root first, then the overlay itself.
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(str(hdir))), key=len, reverse=True):
        run(["umount", "-l", m], check=False)
    shutil.rmtree(hdir, ignore_errors=True)


def _is_mountpoint(path: Path) -> bool:
    return ok(["mountpoint", "-q", str(path)])


def _dirs(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.is_dir()} if path.exists() else set()
