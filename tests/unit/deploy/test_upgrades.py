"""Security-update settings and the rendered apt configuration (plain data, no hosts)."""

from __future__ import annotations

import pytest

from deploy.render import render
from deploy.settings import Data, SettingsError, UpgradeSettings, upgrade_settings


def up(**data: object) -> UpgradeSettings:
    return upgrade_settings(Data(data, env={}))


def test_defaults_security_only_and_server_packages_held() -> None:
    s = up()
    assert s.enabled
    assert all("Debian-Security" in o for o in s.origins)
    text = render("52bgdb-unattended-upgrades.j2", up=s)
    # Debian's own list (which includes point releases) is cleared before ours.
    assert text.index("#clear Unattended-Upgrade::Origins-Pattern;") < \
        text.index('"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";')
    assert '"postgresql-";' in text and '"pgbouncer";' in text
    assert 'APT::Periodic::Unattended-Upgrade "1";' in text
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in text


def test_operator_may_allow_postgresql_minors() -> None:
    text = render("52bgdb-unattended-upgrades.j2", up=up(upgrades_package_blacklist=[]))
    assert "Unattended-Upgrade::Package-Blacklist {\n};" in text


@pytest.mark.parametrize(("key", "value", "says"), [
    ("upgrades_origins", "origin=Debian", "list of strings"),
    ("upgrades_origins", ["origin=Debian,label=Debian"], "no security origin"),
    ("upgrades_origins", ['origin=Debian";evil'], "origin pattern"),
    ("upgrades_origins", ["colour=blue,label=Debian-Security"], "origin pattern"),
    ("upgrades_package_blacklist", ["postgresql-("], "regular expression"),
    ("upgrades_package_blacklist", ['x";'], "package name pattern"),
    ("upgrades_enabled", "no", "True or False"),
])
def test_bad_values_are_refused(key: str, value: object, says: str) -> None:
    with pytest.raises(SettingsError, match=says) as err:
        up(**{key: value})
    assert err.value.key == key
