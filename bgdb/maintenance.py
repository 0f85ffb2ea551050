"""`bgdb maintenance run daily|weekly|monthly`: the scheduled maintenance job, now, on the primary.

It starts the very systemd service the timer starts (deploy/maintenance.py: same runner, same
SQL file, same settings, same status file), waits for it, prints what the job logged in that run
and exits non-zero when the job failed.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from bgdb.targets import OperatorError, reach
from deploy.hostdata import InventoryHost
from deploy.maintenance import PERIODS, maintenance_jobs
from deploy.settings import (
    Data,
    app_settings,
    backup_settings,
    maintenance_settings,
    postgres_settings,
)

__all__ = ["PERIODS", "run", "unit_for"]


def unit_for(inv: InventoryHost, period: str) -> tuple[str, str]:
    """(service unit, description) of the period's job, as the deploy installs it."""
    data = Data(inv.data)
    jobs = maintenance_jobs(maintenance_settings(data), backup_settings(data),
                            postgres_settings(data), app_settings(data))
    for job in jobs:
        if job.unit.endswith(f"-{period}"):
            return job.service, job.description
    raise OperatorError(f"unknown maintenance period {period!r}: expected one of "
                        f"{', '.join(PERIODS)}")


def run(inv: InventoryHost, period: str, say: Callable[[str], None] = print) -> int:
    service, description = unit_for(inv, period)
    target = reach(inv)
    unit = shlex.quote(service)
    loaded = target.host.run(f"systemctl show -p LoadState --value {unit}").stdout.strip()
    if loaded != "loaded":
        raise OperatorError(f"{service} is not installed on {inv.name}: run `bgdb deploy` first")
    say(f"{inv.name}: running {service} ({description}) ...")
    # A oneshot service: `systemctl start` returns when the job has finished, non-zero if it
    # failed (if the timer started it already, this waits for that run).
    started = target.host.run(f"systemctl start {unit}")
    invocation = target.host.run(
        f"systemctl show -p InvocationID --value {unit}").stdout.strip()
    if invocation:
        log = target.host.run(f"journalctl --no-pager -o cat "
                              f"_SYSTEMD_INVOCATION_ID={shlex.quote(invocation)}").stdout
    else:
        log = target.host.run(f"journalctl --no-pager -o cat -n 50 -u {unit}").stdout
    for line in log.rstrip().splitlines():
        say(f"  {line}")
    if started.rc != 0:
        result = target.host.run(f"systemctl show -p Result --value {unit}").stdout.strip()
        say(f"{inv.name}: {service} FAILED ({result or started.stderr.strip()}); "
            f"more: journalctl -u {service}")
        return 1
    say(f"{inv.name}: {service} finished successfully")
    return 0
