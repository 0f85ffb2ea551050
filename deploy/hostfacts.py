"""The facts of a database host that the deploy acts on and the checks verify: RAM, CPUs and the
distribution (which decides the default PostgreSQL major).

One shell command and one parser serve both sides: the deploy reads them as a pyinfra fact, the
readiness checks and the operator CLI run the same command over their own SSH connection, so a
check recomputes exactly what the deploy computed (the same kB of RAM, not a rounded MB).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pyinfra.api import FactBase

from deploy.settings import Data, PostgresSettings, SettingsError, postgres_settings, server_config

# Debian release (VERSION_ID) -> the PostgreSQL major its archive ships.
DEBIAN_POSTGRES = {"11": 13, "12": 15, "13": 17}

COMMAND = (
    "awk '/^MemTotal:/ {print \"memory_kb=\" $2}' /proc/meminfo; echo \"cpus=$(nproc)\"; "
    "(. /etc/os-release && echo \"os_id=$ID\" && echo \"os_version=${VERSION_ID:-}\" "
    "&& echo \"os_codename=${VERSION_CODENAME:-}\")"
)


@dataclass(frozen=True)
class HostFacts:
    memory_kb: int
    cpus: int
    os_id: str
    os_version: str  # VERSION_ID: "11", "12", "13" on Debian
    os_codename: str

    @property
    def describe(self) -> str:
        return f"{self.os_id} {self.os_version or '?'} ({self.os_codename or '?'})"

    @property
    def default_postgres(self) -> int | None:
        return DEBIAN_POSTGRES.get(self.os_version) if self.os_id == "debian" else None


def parse(lines: list[str]) -> HostFacts:
    found = dict(line.split("=", 1) for line in lines if "=" in line)
    try:
        return HostFacts(int(found["memory_kb"]), max(1, int(found["cpus"])),
                         found.get("os_id", "").strip('"'), found.get("os_version", "").strip('"'),
                         found.get("os_codename", "").strip('"'))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unreadable host facts ({exc}): {lines!r}") from None


def resolve(pg: PostgresSettings, facts: HostFacts, host_name: str) -> PostgresSettings:
    """The settings with postgres_version decided: the explicit one, else the distribution's."""
    if pg.version is not None:
        return pg
    default = facts.default_postgres
    if default is None:
        raise SettingsError(f"postgres_version of {host_name}", None,
                            f"no default PostgreSQL for {facts.describe}: Debian 11, 12 or 13 "
                            "decide it; elsewhere set postgres_version")
    return dataclasses.replace(pg, version=default)


def tuned_config(pg: PostgresSettings, facts: HostFacts) -> dict[str, str]:
    """The server configuration for this host: what the deploy writes and the checks expect."""
    return server_config(pg, facts.memory_kb, facts.cpus)


def host_postgres(h: Any) -> PostgresSettings:
    """A pyinfra host's PostgreSQL settings, its version decided (this host or a peer)."""
    return resolve(postgres_settings(Data(h.data.dict())), h.get_fact(Facts), h.name)


def check_installable(pg: PostgresSettings, h: Any) -> None:
    """An explicit postgres_version the host's apt cannot install stops the deploy before any
    change: one line naming the key, the value and the host's release."""
    explicit = Data(h.data.dict()).raw("postgres_version")[0]
    if explicit is None:
        return
    if not h.get_fact(AptCandidate, package=f"postgresql-{pg.version}"):
        facts = h.get_fact(Facts)
        default = facts.default_postgres
        hint = f"; its default is {default} (postgres_version = None)" if default else ""
        raise SettingsError(f"postgres_version of {h.name}", explicit,
                            f"postgresql-{pg.version} is not installable on {facts.describe} "
                            f"(no apt candidate){hint}")


def check_ha_release(facts: HostFacts, name: str) -> None:
    """HA mode on a release whose Patroni cannot run our etcd layout stops the deploy before any
    change. Debian 11's Patroni 2.0.2 learns etcd's version only while discovering the etcd
    members; with fixed endpoints (`use_proxies`, which keeps a cut-off member from reading its
    own stale etcd: deploy/ha_config.py) it never does, and exits on start ("'>=' not supported
    between instances of 'NoneType' and 'tuple'", seen on a Debian 11 lab)."""
    if facts.os_id == "debian" and facts.os_version.isdigit() and int(facts.os_version) < 12:
        raise SettingsError(f"postgres_ha of {name}", True,
                            f"HA mode needs Debian 12 or 13 on every member; {name} runs "
                            f"{facts.describe}, whose Patroni 2.0 cannot use etcd's v3 API "
                            "through fixed endpoints")


class Facts(FactBase[HostFacts]):
    """pyinfra's side of COMMAND."""

    def command(self) -> str:
        return COMMAND

    def process(self, output: list[str]) -> HostFacts:
        return parse(output)


LIST_FETCH = ("for try in 1 2 3; do timeout -k 10 180 apt-get update -qq -o Acquire::Retries=2 "
              ">/dev/null 2>&1 && break; [ $try = 3 ] && false; done")


class AptCandidate(FactBase[str]):
    """The version apt would install of a package ('' when none); reads the package lists,
    fetching them first on a host that has never had any (a fresh image). That fetch touches
    the stamp apt.packages(cache_time=...) reads, as its own update does, so the install right
    after it does not fetch the lists a second time."""

    def command(self, package: str) -> str:
        # Bounded and retried: an apt-get update whose mirror stops answering mid-transfer can
        # wait for ever (seen on a lab host: 7 minutes, no connection left open).
        return ("ls /var/lib/apt/lists/ 2>/dev/null | grep -q '_Packages' "
                f"|| {{ {LIST_FETCH} && mkdir -p /var/lib/apt/periodic "
                "&& touch /var/lib/apt/periodic/update-success-stamp; }; "
                f"apt-cache policy {package} 2>/dev/null | sed -n 's/^ *Candidate: //p'")

    def process(self, output: list[str]) -> str:
        value = output[0].strip() if output else ""
        return "" if value == "(none)" else value


class UnitProperty(FactBase[str]):
    """A property of a systemd unit as systemd has it loaded (FragmentPath, Restart, ...)."""

    def command(self, unit: str, prop: str) -> str:
        return f"systemctl show -p {prop} --value {unit}"

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else ""
