"""Security updates on the deployed sandbox primary: what unattended-upgrade itself says it would
do (a dry run: it reads the merged apt configuration and the package lists fetched through the
sandbox's apt proxy), and the timers that run it."""

from __future__ import annotations

import subprocess

from tests.sandbox_fixtures import Deployed


def ssh(deployed: Deployed, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(deployed.ssh_config()), deployed.primary.address,
                           command], capture_output=True, text=True, timeout=180)


def test_unattended_upgrade_dry_run_takes_security_only_and_holds_server_packages(
        deployed: Deployed) -> None:
    out = ssh(deployed, "unattended-upgrade --dry-run -d 2>&1")
    assert out.returncode == 0, out.stdout[-3000:]
    allowed = next(line for line in out.stdout.splitlines()
                   if line.startswith("Allowed origins are:"))
    assert allowed == ("Allowed origins are: "
                       "origin=Debian,codename=bookworm-security,label=Debian-Security, "
                       "origin=Debian,codename=bookworm,label=Debian-Security")
    assert "Initial blacklist: postgresql- pgbouncer" in out.stdout
    # The point-release archive (label=Debian) is pinned away, the security archive is not.
    assert "Marking not allowed" in out.stdout
    assert not any("Marking not allowed" in line and "security" in line
                   for line in out.stdout.splitlines()), out.stdout[-3000:]


def test_apt_keeps_the_hosts_proxy_and_the_timers_are_scheduled(deployed: Deployed) -> None:
    conf = ssh(deployed, "apt-config dump")
    assert 'Acquire::http::Proxy "http://10.231.0.1:3142";' in conf.stdout
    timers = ssh(deployed, "systemctl list-timers --no-legend apt-daily.timer "
                           "apt-daily-upgrade.timer")
    assert timers.stdout.count(".timer") == 2, timers.stdout
