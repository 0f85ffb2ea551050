"""Scheduled jobs on a database host: the runner (bgdb/jobs.py) and one systemd service + timer
per job. Shared by the backup and maintenance deploys."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api import FactBase
from pyinfra.operations import files, systemd

from deploy import uploads
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


def install_timer(job: Job, after: str) -> None:
    """The service (oneshot, as postgres) and its timer, enabled; the timer is restarted when
    its schedule changed so the new one applies at once."""
    service = uploads.put(name=f"Install {job.service}",
                          src=as_file("bgdb-job.service.j2", job=job, after=after),
                          dest=f"{UNIT_DIR}/{job.service}", mode="0644")
    timer = uploads.put(name=f"Install {job.timer}", src=as_file("bgdb-job.timer.j2", job=job),
                        dest=f"{UNIT_DIR}/{job.timer}", mode="0644")
    systemd.service(name=f"Enable {job.timer}", service=job.timer, running=True, enabled=True,
                    restarted=timer.will_change,
                    daemon_reload=service.will_change or timer.will_change)


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
