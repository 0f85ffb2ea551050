"""The scheduled jobs' state on one host: timers enabled and active, last runs not failed
(the job runner's status files, bgdb/jobs.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from bgdb.remote import Target

MAINTENANCE_TIMERS = ["bgdb-maintenance-daily", "bgdb-maintenance-weekly",
                      "bgdb-maintenance-monthly"]


def timer_problems(target: Target, units: Iterable[str]) -> list[str]:
    wrong = []
    for unit in units:
        timer = target.host.service(f"{unit}.timer")
        if not timer.is_enabled:
            wrong.append(f"{unit}.timer is not enabled")
        elif not timer.is_running:
            wrong.append(f"{unit}.timer is not active")
    return wrong


def failed_jobs(target: Target, status_dir: str, units: Iterable[str]) -> list[str]:
    failed = []
    for unit in units:
        f = target.host.file(f"{status_dir}/{unit.removeprefix('bgdb-')}.json")
        if not f.exists:
            continue
        status = json.loads(f.content_string)
        if not status.get("ok"):
            failed.append(f"{status.get('job')} at {status.get('finished_at')}: "
                          f"{status.get('message')}")
    return failed
