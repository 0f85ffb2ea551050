"""Fixtures shared by every test; the sandbox ones live in tests/sandbox_fixtures.py."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from tests.sandbox_fixtures import TIMELINE_ENV, deployed, pg_admin_dsn, sandbox_lab, scratch_dsn

__all__ = ["deployed", "pg_admin_dsn", "sandbox_lab", "scratch_dsn"]


# Modules that boot their own lab and run for minutes: with `make test`'s two workers (pytest-xdist,
# one file at a time per worker) they start first, so the rest runs beside them, not after.
LONG_MODULES = ("tests/integration/deploy/test_replica.py",
                "tests/integration/deploy/test_backup_host.py",
                "tests/integration/deploy/test_real_hosts.py",
                "tests/integration/monitoring/test_monitoring_stack.py")


def pytest_configure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ and TIMELINE_ENV not in os.environ:
        # Set before the workers start: they inherit it and append their labs' phases.
        fd, path = tempfile.mkstemp(prefix="bgdb-lab-timeline-", suffix=".jsonl")
        os.close(fd)
        os.environ[TIMELINE_ENV] = path
        config.stash[_TIMELINE] = (Path(path), time.time())
    # Each xdist worker deploys its own lab; first-use generation of passwords and certificates
    # must not race between two workers, so the second one keeps its secrets apart.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    if worker != "gw0" and "BGDB_SECRETS_DIR" not in os.environ:
        workers = Path(config.rootpath) / ".secrets" / "workers"
        workers.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ["BGDB_SECRETS_DIR"] = str(workers / worker)


_TIMELINE = pytest.StashKey[tuple[Path, float]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    """The labs' phases, seconds after the run's start: what ran beside what."""
    if _TIMELINE not in config.stash:
        return
    path, started = config.stash[_TIMELINE]
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.unlink(missing_ok=True)
    if not entries:
        return
    terminalreporter.section("sandbox labs (s after start)")
    for e in sorted(entries, key=lambda e: e["start"]):
        terminalreporter.write_line(
            f"{e['start'] - started:7.0f} {e['end'] - started:7.0f} {e['end'] - e['start']:6.0f}"
            f"  {e['worker']:<5} {e['lab']:<10} {e['what']}")


# Last, after the unit tests (seconds), so it runs alone: the HA module times failovers and
# loads the cluster; beside another lab's deploy it took 7.9 min instead of ~6 in one CI run.
LAST_MODULES = ("tests/integration/ha/test_failover.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration needs hosts; mark it so `-m "not integration"` is fast.
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.fspath)).as_posix()
        if path.endswith(LAST_MODULES):
            return len(LONG_MODULES) + 1
        return next((i for i, m in enumerate(LONG_MODULES) if path.endswith(m)),
                    len(LONG_MODULES))

    items.sort(key=rank)  # stable: the order within and among the other modules stays
