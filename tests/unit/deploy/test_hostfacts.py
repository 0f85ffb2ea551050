"""The host facts both the deploy and the checks read, and the PostgreSQL major they decide."""

from __future__ import annotations

import pytest

from deploy import hostfacts
from deploy.settings import Data, SettingsError, postgres_settings, server_config

BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"]}


def facts(version: str, os_id: str = "debian") -> hostfacts.HostFacts:
    return hostfacts.parse(["memory_kb=25165824", "cpus=2", f"os_id={os_id}",
                            f'os_version="{version}"', "os_codename=x"])


def test_parse_reads_the_command_output() -> None:
    f = facts("12")
    assert (f.memory_kb, f.cpus, f.os_id, f.os_version) == (25165824, 2, "debian", "12")


def test_parse_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="unreadable host facts"):
        hostfacts.parse(["no facts here"])


@pytest.mark.parametrize(("release", "major"), [("11", 13), ("12", 15), ("13", 17)])
def test_the_distribution_decides_the_default_major(release: str, major: int) -> None:
    pg = postgres_settings(Data(BASE, env={}))
    assert pg.version is None
    resolved = hostfacts.resolve(pg, facts(release), "db1")
    assert resolved.version == major
    assert resolved.unit == f"postgresql@{major}-main"


def test_an_explicit_version_wins() -> None:
    pg = postgres_settings(Data({**BASE, "postgres_version": 16}, env={}))
    assert hostfacts.resolve(pg, facts("11"), "db1").version == 16


def test_no_default_outside_debian_is_one_line() -> None:
    pg = postgres_settings(Data(BASE, env={}))
    with pytest.raises(SettingsError, match="postgres_version of db1") as err:
        hostfacts.resolve(pg, facts("24.04", "ubuntu"), "db1")
    assert "\n" not in str(err.value) and "ubuntu 24.04" in str(err.value)


def test_tuning_uses_the_reported_kilobytes() -> None:
    """No rounding to MB: the check recomputes from the same kB the deploy tuned for."""
    pg = hostfacts.resolve(postgres_settings(Data(BASE, env={})), facts("12"), "db1")
    odd = hostfacts.HostFacts(25165823, 2, "debian", "12", "bookworm")
    assert hostfacts.tuned_config(pg, odd) == server_config(pg, 25165823, 2)


@pytest.mark.parametrize(("release", "packages"), [
    ("11", ["libpq5"]), ("12", ["python3-psycopg"]), ("13", ["python3-psycopg"])])
def test_psycopg3_from_the_archive_or_brought_on_debian_11(release: str,
                                                          packages: list[str]) -> None:
    from deploy import pylibs

    assert pylibs.apt_packages(facts(release)) == packages
    assert pylibs.needs_wheels(facts(release)) == (release == "11")
    # Pinned to the 3.2 series: the last psycopg for bullseye's Python 3.9.
    assert pylibs.WHEELS[0].startswith("psycopg-3.2.")


def test_ha_mode_refuses_debian_11_before_any_change() -> None:
    """Patroni 2.0.2 (Debian 11) exits on start with our etcd layout (seen on a lab)."""
    bullseye = hostfacts.HostFacts(2097152, 2, "debian", "11", "bullseye")
    with pytest.raises(SettingsError, match=r"settings error: postgres_ha of db1 = True: HA mode "
                       r"needs Debian 12 or 13 on every member; db1 runs debian 11 \(bullseye\)"):
        hostfacts.check_ha_release(bullseye, "db1")
    for release, codename in (("12", "bookworm"), ("13", "trixie")):
        hostfacts.check_ha_release(hostfacts.HostFacts(2097152, 2, "debian", release, codename),
                                   "db1")
