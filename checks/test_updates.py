"""Security updates scheduled on every database and backup host (deploy/upgrades.py): what apt
will actually do, read from `apt-config dump` (every file merged), and apt's timers running.
Maps to CIS Debian Linux "Ensure updates, patches, and additional security software are
installed"; CIS PostgreSQL has no item for OS updates."""

from __future__ import annotations

import pytest

from bgdb.remote import Target
from deploy.hostdata import load_inventory
from deploy.settings import Data, UpgradeSettings, upgrade_settings
from deploy.upgrades import TIMERS

UPDATED_GROUPS = {"postgres_primary", "postgres_replicas", "backup"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Its own host set (db + backup hosts); kept here so checks/conftest.py stays as it is.
    if "updated" in metafunc.fixturenames:
        targets = [Target(h) for h in load_inventory() if UPDATED_GROUPS & set(h.groups)]
        metafunc.parametrize("updated", targets, ids=[t.name for t in targets],
                             scope="session")


def _settings(t: Target) -> UpgradeSettings:
    up = upgrade_settings(Data(t.inv.data))
    if not up.enabled:
        pytest.skip("updates left to the operator (upgrades_enabled = False)")
    return up


def apt_config(t: Target) -> dict[str, list[str]]:
    """`apt-config dump`: key -> values (a list's items share their key)."""
    out = t.host.run("apt-config dump")
    assert out.rc == 0, f"apt-config dump failed: {out.stderr.strip()}"
    conf: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        value = value.rstrip(";").strip('"')
        if value:
            conf.setdefault(key.rstrip(":"), []).append(value)
    return conf


def test_unattended_upgrades_configured(updated: Target) -> None:
    """Security updates install daily; PostgreSQL, PgBouncer wait for a window (CIS Debian)"""
    up = _settings(updated)
    assert updated.host.package("unattended-upgrades").is_installed, \
        "unattended-upgrades is not installed: security updates are never applied"
    conf = apt_config(updated)
    for key in ("APT::Periodic::Update-Package-Lists", "APT::Periodic::Unattended-Upgrade"):
        value = conf.get(key, ["0"])[-1]
        assert value not in ("0", ""), f"{key} is '{value}': apt's daily job skips it"
    origins = conf.get("Unattended-Upgrade::Origins-Pattern", [])
    assert any("Debian-Security" in o or "-security" in o for o in origins), \
        f"no security origin among the allowed origins {origins}"
    assert set(origins) == set(up.origins), \
        f"allowed origins {origins}, deploy asked for {list(up.origins)}"
    held = conf.get("Unattended-Upgrade::Package-Blacklist", [])
    assert set(up.package_blacklist) <= set(held), \
        f"blacklist {held} lacks {sorted(set(up.package_blacklist) - set(held))}: their " \
        "upgrades would restart the service outside a maintenance window"


@pytest.mark.parametrize("timer", TIMERS)
def test_apt_timers_active(updated: Target, timer: str) -> None:
    """apt's daily timers (list refresh, unattended-upgrade) are enabled and active"""
    _settings(updated)
    svc = updated.host.service(timer)
    state = updated.host.run(f"systemctl is-enabled {timer}").stdout.strip() or "missing"
    assert svc.is_enabled, f"{timer} is {state}: unattended-upgrade never runs"
    assert svc.is_running, f"{timer} is not active: unattended-upgrade never runs"
