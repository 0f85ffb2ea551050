"""The read-only base image every sandbox host boots from (one overlay per host on top)."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from sandbox import paths
from sandbox.run import SandboxError, run

SUITE = "bookworm"
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
SOURCES = f"""deb {MIRROR} {SUITE} main
deb {MIRROR} {SUITE}-updates main
deb http://deb.debian.org/debian-security {SUITE}-security main
"""


def image_id() -> str:
    """Changes whenever what goes into the image changes, so a stale image is never reused."""
    recipe = "|".join((SUITE, MIRROR, SOURCES, *PACKAGES, _customize.__doc__ or ""))
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def ensure_image(proxy: str) -> Path:
    """Return the base image directory, building it through the apt proxy if missing."""
    target = paths.IMAGES / f"bookworm-{image_id()}"
    if (target / ".complete").exists():
        return target
    paths.IMAGES.mkdir(parents=True, exist_ok=True)
    for old in paths.IMAGES.iterdir():  # earlier recipes and half-built images
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
            SUITE,
            str(building),
            SOURCES,
        ]
    )
    _customize(building, proxy)
    (building / ".complete").write_text(f"built in {time.monotonic() - started:.1f}s\n")
    building.rename(target)
    return target


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
