"""Security updates on every database and backup host: unattended-upgrades installs updates from
Debian's security archive only, daily, through apt's own timers (apt-daily.timer refreshes the
lists, apt-daily-upgrade.timer runs unattended-upgrade). Packages whose upgrade restarts a
service the agents use (PostgreSQL, PgBouncer) are left out by default: an unplanned postmaster
restart cuts every connection, so those wait for a maintenance window (README, "Security
updates"). apt goes through whatever proxy the host's apt configuration already names."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import files, server

from deploy import aptbatch, uploads
from deploy.render import as_file
from deploy.settings import UpgradeSettings

CONF = "/etc/apt/apt.conf.d/52bgdb-unattended-upgrades"
TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")


class InactiveUnits(FactBase[list[str]]):
    """Those of `units` that are not both enabled and active (masked ones included)."""

    def command(self, units: list[str]) -> str:
        return (f"for u in {' '.join(units)}; do systemctl is-enabled --quiet $u 2>/dev/null "
                "&& systemctl is-active --quiet $u || echo $u; done; true")

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line]


@deploy("Schedule security updates")
def write_config(up: UpgradeSettings) -> None:
    """Before any install: unattended-upgrades comes with the host's other packages
    (deploy/aptbatch.py), and must never run with Debian's defaults (PostgreSQL included)."""
    if not up.enabled:
        files.file(name="Leave updates to the operator (upgrades_enabled = False)", path=CONF,
                   present=False)
        return
    uploads.put(name="Configure unattended-upgrades: security origins, no server restarts",
                src=as_file("52bgdb-unattended-upgrades.j2", up=up), dest=CONF, mode="0644")


@deploy("Schedule security updates")
def configure_upgrades(up: UpgradeSettings) -> None:
    if not up.enabled:
        return
    aptbatch.install(name="Install unattended-upgrades", packages=["unattended-upgrades"],
                     update=True, cache_time=86400, no_recommends=True)
    # unmask: minimal images (and the sandbox's) mask apt's timers.
    server.shell(name="Enable apt's daily timers",
                 commands=[f"systemctl unmask {' '.join(TIMERS)}",
                           f"systemctl enable --now {' '.join(TIMERS)}"],
                 _if=lambda: bool(host.get_fact(InactiveUnits, units=list(TIMERS))))
