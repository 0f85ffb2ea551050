"""Scheduled jobs on a database host: the runner (bgdb/jobs.py) and one systemd service + timer
per job. Shared by the backup and maintenance deploys."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand, operation
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra.operations import files

from deploy import factcache, uploads
from deploy.render import as_file

REPO = Path(__file__).resolve().parent.parent
REMOTE = "/usr/local/lib/bgdb"  # where deploy/schema.py puts bgdb/ and sql/ too
RUNNER = f"{REMOTE}/bgdb/jobs.py"
UNIT_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class Job:
    unit: str  # bgdb-backup-full: bgdb-backup-full.service + .timer
    description: str
    schedule: str  # systemd OnCalendar
    args: tuple[str, ...]  # the runner's arguments
    timeout: str = "6h"  # systemd TimeoutStartSec: a hung job fails instead of blocking the next
    user: str = "postgres"  # pgbackrest on a backup host

    @property
    def command(self) -> str:
        return shlex.join(["/usr/bin/python3", RUNNER, *self.args])

    @property
    def service(self) -> str:
        return f"{self.unit}.service"

    @property
    def timer(self) -> str:
        return f"{self.unit}.timer"


def common_args(name: str, status_dir: str, port: int, database: str) -> tuple[str, ...]:
    return ("--name", name, "--status-dir", status_dir, "--port", str(port),
            "--database", database)


def install_runner(status_dir: str, user: str = "postgres") -> None:
    uploads.put(name="Upload the job runner", src=str(REPO / "bgdb" / "jobs.py"), dest=RUNNER,
                mode="0755", create_remote_dir=True)
    # Readable by everyone: the exporter reads backup.json from here.
    files.directory(name="Create the job status directory", path=status_dir, user=user,
                    group=user, mode="0755")


def install_timers(jobs: Iterable[Job], after: str, what: str) -> None:
    """Each job's service (oneshot, as postgres) and timer, then one operation for all the
    timers: one daemon-reload when any of their files changed, then start, restart (a timer
    whose schedule changed, so the new one applies at once) and enable, each one command."""
    reload, timers, restart = False, [], []
    for job in jobs:
        service = uploads.put(name=f"Install {job.service}",
                              src=as_file("bgdb-job.service.j2", job=job, after=after),
                              dest=f"{UNIT_DIR}/{job.service}", mode="0644")
        timer = uploads.put(name=f"Install {job.timer}",
                            src=as_file("bgdb-job.timer.j2", job=job),
                            dest=f"{UNIT_DIR}/{job.timer}", mode="0644")
        timers.append(job.timer)
        if timer.will_change:
            restart.append(job.timer)
        reload = reload or service.will_change or timer.will_change
    factcache.expect_units(timers)
    enable_timers(name=f"Enable the {what} timers", timers=timers, restart=restart,
                  daemon_reload=reload)


@operation()
def enable_timers(timers: list[str], restart: list[str], daemon_reload: bool):
    """systemd.service(running=True, enabled=True, restarted=..., daemon_reload=...) for
    several units, with the same decisions per unit."""
    if daemon_reload:
        yield "systemctl daemon-reload"
    running = {t: bool(host.get_fact(SystemdStatus, services=[t]).get(t)) for t in timers}
    enabled = {t: bool(host.get_fact(SystemdEnabled, services=[t]).get(t)) for t in timers}
    for verb, units in timer_actions(timers, restart, running, enabled):
        yield StringCommand("systemctl", verb, *(QuoteString(u) for u in units))


def timer_actions(timers: list[str], restart: list[str], running: dict[str, bool],
                  enabled: dict[str, bool]) -> list[tuple[str, list[str]]]:
    """systemd.service's decisions per unit, grouped by verb: start what is not running,
    restart what is running and asked to, enable what is not enabled."""
    actions = [("start", [t for t in timers if not running[t]]),
               ("restart", [t for t in restart if running[t]]),
               ("enable", [t for t in timers if not enabled[t]])]
    return [(verb, units) for verb, units in actions if units]


class EnabledUnits(FactBase[list[str]]):
    """Those of `units` that are enabled."""

    def command(self, units: list[str]) -> str:
        return (f"for u in {' '.join(units)}; do systemctl is-enabled --quiet $u 2>/dev/null "
                "&& echo $u; done; true")

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line]
