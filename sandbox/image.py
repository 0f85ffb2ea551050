"""The read-only base image every sandbox host boots from (one overlay per host on top)."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from sandbox import paths
from sandbox.run import SandboxError, run

# Debian release (VERSION_ID) -> suite. Each release has its own base image; 12 is the default.
RELEASES = {"11": "bullseye", "12": "bookworm", "13": "trixie"}
DEFAULT_RELEASE = "12"
SUITE = RELEASES[DEFAULT_RELEASE]
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "libnss-myhostname",
    "openssh-server",
    "python3",
    "sudo",
    "iproute2",
    "ca-certificates",
    "procps",
)


def sources(suite: str) -> str:
    return f"""deb {MIRROR} {suite} main
deb {MIRROR} {suite}-updates main
deb http://deb.debian.org/debian-security {suite}-security main
"""


SOURCES = sources(SUITE)


def suite_of(release: str) -> str:
    if release not in RELEASES:
        raise SandboxError(f"release {release!r}: expected one of {', '.join(RELEASES)} "
                           "(Debian 11, 12, 13)")
    return RELEASES[release]


def image_id(release: str = DEFAULT_RELEASE) -> str:
    """Changes whenever what goes into the image changes, so a stale image is never reused.
    (Debian 12's recipe is the one from before other releases existed: its image stays.)"""
    suite = suite_of(release)
    recipe = "|".join((suite, MIRROR, sources(suite), *PACKAGES, _customize.__doc__ or ""))
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def ensure_image(proxy: str, release: str = DEFAULT_RELEASE) -> Path:
    """Return the release's base image directory, building it through the apt proxy if missing.
    Called under the sandbox's machine-wide lock."""
    suite = suite_of(release)
    target = paths.IMAGES / f"{suite}-{image_id(release)}"
    if (target / ".complete").exists():
        return target
    paths.IMAGES.mkdir(parents=True, exist_ok=True)
    for old in stale_images(suite, target, Path("/proc/mounts").read_text()):
        shutil.rmtree(old, ignore_errors=True)
    building = target.with_name(target.name + ".building")
    started = time.monotonic()
    run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--include=" + ",".join(PACKAGES),
            f"--aptopt=Acquire::http::Proxy \"{proxy}\"",
            "--quiet",
            suite,
            str(building),
            sources(suite),
        ]
    )
    _customize(building, proxy)
    (building / ".complete").write_text(f"built in {time.monotonic() - started:.1f}s\n")
    building.rename(target)
    return target


def stale_images(suite: str, keep: Path, mounts: str) -> list[Path]:
    """This release's earlier recipes and half-built images, except any a live host is
    mounted on (`mounts`: /proc/mounts): other releases' images and images in use stay."""
    if not paths.IMAGES.exists():
        return []
    return [p for p in paths.IMAGES.iterdir()
            if p != keep and p.name.startswith(f"{suite}-") and f"lowerdir={p}," not in mounts
            and f"lowerdir={p} " not in mounts]


def _customize(root: Path, proxy: str) -> None:
    """v1: apt proxy, resolv.conf on loopback, no ssh password login, journal in RAM."""
    (root / "etc/apt/apt.conf.d/01proxy").write_text(f'Acquire::http::Proxy "{proxy}";\n')
    # Keep apt's downloads small: the proxy on the machine is the cache.
    (root / "etc/apt/apt.conf.d/02nocache").write_text(
        'Binary::apt::APT::Keep-Downloaded-Packages "false";\n'
    )
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    # No DNS in the sandbox: lookups must fail at once, not after a timeout.
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    sshd = root / "etc/ssh/sshd_config.d/sandbox.conf"
    sshd.write_text("PasswordAuthentication no\nUseDNS no\nPermitRootLogin prohibit-password\n")
    journald = root / "etc/systemd/journald.conf.d"
    journald.mkdir(parents=True, exist_ok=True)
    (journald / "sandbox.conf").write_text("[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n")
    # Units that make no sense in a container and only slow the boot.
    for unit in ("systemd-networkd-wait-online.service", "apt-daily.timer",
                 "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"):
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")  # each host gets its own at first boot
    if not (root / "etc/ssh/ssh_host_ed25519_key.pub").exists():
        raise SandboxError("base image has no ssh host key: openssh-server did not install")


def host_key(image: Path) -> str:
    return (image / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1]
