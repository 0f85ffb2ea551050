"""PostgreSQL tuning from the host's shape, following PGTune.

Pure functions, no pyinfra: the settings code passes a :class:`HostShape` (RAM, CPUs, disk kind,
workload, major version) and gets back ``postgresql.conf`` names mapped to rendered values.

The formulas, thresholds and rounding follow PGTune (https://github.com/le0pard/pgtune) as of
commit 7caef27c204d304623eda21f23e7d56c1ad78d36 (July 2026), read from:

- ``src/features/configuration/configurationSlice.js`` (every ``select*`` formula),
- ``src/common/components/configurationView/index.jsx`` (``formatValue``, output order, and the
  rule that a setting with no value is left out),
- ``src/features/configuration/__tests__/configurationSlice.test.js`` (its own expectations).

This is our own code. Where PGTune has inputs we do not model, we take PGTune's defaults or the
case that applies to our hosts:

- operating system: Linux (so ``effective_io_concurrency`` is set, ``huge_pages`` may be ``try``,
  the 2 GB Windows caps never apply, and PostgreSQL 18 gets ``io_method = io_uring``);
- database size versus RAM: PGTune's default "mid_ram" (no work_mem adjustment; a data warehouse
  keeps ``random_page_cost = 4`` even on SSD/SAN);
- CPUs: always known, so below 4 CPUs no parallel settings are emitted and work_mem reserves
  PostgreSQL's default 8 worker processes, exactly as PGTune does when it has a CPU count < 4.

Two points where current PGTune differs from older write-ups (and from DESIGN.md section 4):
maintenance_work_mem is capped at 8 GB (2 GB only on Windows up to PostgreSQL 17), and work_mem is
floored at 4 MB. PGTune also emits ``autovacuum_max_workers`` (16+ CPUs), ``autovacuum_work_mem``
(when maintenance_work_mem >= 2 GB) and, on PostgreSQL 18, ``io_method``; so do we.

Sizes are kB integers throughout; PGTune uses JavaScript floats and ``Math.floor``. For positive
integers ``floor(floor(a / b) / c) == a // (b * c)``, so integer division gives the same numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

Workload = Literal["web", "oltp", "dw", "mixed"]
DiskType = Literal["ssd", "hdd", "san"]

WORKLOADS: tuple[str, ...] = get_args(Workload)
DISK_TYPES: tuple[str, ...] = get_args(DiskType)

# PGTune's oldest supported major version; the version gates below start there.
MIN_PG_MAJOR = 10

KB_PER_MB = 1024
KB_PER_GB = 1024 * 1024
KB_PER_TB = 1024 * 1024 * 1024

_DEFAULT_MAX_CONNECTIONS: dict[str, int] = {"web": 200, "oltp": 300, "dw": 40, "mixed": 100}
_MIN_WAL_SIZE_KB: dict[str, int] = {
    "web": 1 * KB_PER_GB,
    "oltp": 2 * KB_PER_GB,
    "dw": 4 * KB_PER_GB,
    "mixed": 1 * KB_PER_GB,
}
_MAX_WAL_SIZE_KB: dict[str, int] = {
    "web": 4 * KB_PER_GB,
    "oltp": 8 * KB_PER_GB,
    "dw": 16 * KB_PER_GB,
    "mixed": 4 * KB_PER_GB,
}
# work_mem share per workload: web/oltp take the whole per-connection budget, dw/mixed half.
_WORK_MEM_DIVISOR: dict[str, int] = {"web": 1, "oltp": 1, "dw": 2, "mixed": 2}
_EFFECTIVE_IO_CONCURRENCY: dict[str, int] = {"hdd": 2, "ssd": 200, "san": 300}

# PostgreSQL's default max_worker_processes, used by PGTune for work_mem when it sets none.
_DEFAULT_MAX_WORKER_PROCESSES = 8
_MAINTENANCE_WORK_MEM_CAP_KB = 8 * KB_PER_GB
_WORK_MEM_FLOOR_KB = 4 * KB_PER_MB
_WAL_BUFFERS_MAX_KB = 16 * KB_PER_MB
# 3% of shared_buffers landing between 14 MB and 16 MB is rounded up to an even 16 MB.
_WAL_BUFFERS_ROUND_UP_ABOVE_KB = 14 * KB_PER_MB
_WAL_BUFFERS_MIN_KB = 32
_HUGE_PAGES_THRESHOLD_KB = 2 * KB_PER_GB
_AUTOVACUUM_WORK_MEM_KB = 2 * KB_PER_GB


@dataclass(frozen=True)
class HostShape:
    """What the tuning depends on. ``memory_kb`` is total RAM in kB (as in /proc/meminfo)."""

    memory_kb: int
    cpus: int
    disk: DiskType = "ssd"
    workload: Workload = "oltp"
    pg_major: int = 15
    max_connections: int | None = None

    def __post_init__(self) -> None:
        _require_int("memory_kb", self.memory_kb, minimum=1)
        _require_int("cpus", self.cpus, minimum=1)
        _require_int("pg_major", self.pg_major, minimum=MIN_PG_MAJOR)
        if self.max_connections is not None:
            _require_int("max_connections", self.max_connections, minimum=1)
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload: {self.workload!r} is not one of {', '.join(WORKLOADS)}")
        if self.disk not in DISK_TYPES:
            raise ValueError(f"disk: {self.disk!r} is not one of {', '.join(DISK_TYPES)}")


def _require_int(name: str, value: object, *, minimum: int) -> None:
    # bool is an int subclass; True as a CPU count is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: {value} is below the minimum of {minimum}")


def compute(shape: HostShape) -> dict[str, str]:
    """PGTune's recommendations for ``shape``: ``postgresql.conf`` name -> rendered value.

    Keys come in PGTune's output order; settings PGTune leaves out (e.g. ``jit`` for dw, the
    parallel settings below 4 CPUs) are absent rather than empty.
    """
    ram = shape.memory_kb
    workload = shape.workload
    pg = shape.pg_major

    max_connections = shape.max_connections or _DEFAULT_MAX_CONNECTIONS[workload]
    shared_buffers = ram // 4
    effective_cache_size = ram * 3 // 4
    maintenance_work_mem = min(ram // (8 if workload == "dw" else 16), _MAINTENANCE_WORK_MEM_CAP_KB)
    parallel = _parallel_settings(shape)
    worker_processes = parallel.get("max_worker_processes", _DEFAULT_MAX_WORKER_PROCESSES)
    # (RAM - shared_buffers) / ((max_connections + max_worker_processes) * 3), then the
    # workload share, floored at 4 MB.
    work_mem = max(
        (ram - shared_buffers)
        // ((max_connections + worker_processes) * 3 * _WORK_MEM_DIVISOR[workload]),
        _WORK_MEM_FLOOR_KB,
    )

    conf: dict[str, str] = {
        "max_connections": str(max_connections),
        "shared_buffers": format_size_kb(shared_buffers),
        "effective_cache_size": format_size_kb(effective_cache_size),
        "maintenance_work_mem": format_size_kb(maintenance_work_mem),
        "checkpoint_completion_target": "0.9",
        "wal_buffers": format_size_kb(_wal_buffers(shared_buffers)),
        "default_statistics_target": "500" if workload == "dw" else "100",
        "random_page_cost": _random_page_cost(shape),
        "effective_io_concurrency": str(_EFFECTIVE_IO_CONCURRENCY[shape.disk]),
        "work_mem": format_size_kb(work_mem),
        "huge_pages": "try" if shared_buffers >= _HUGE_PAGES_THRESHOLD_KB else "off",
    }
    # JIT mostly costs short queries planning time; PGTune turns it off unless the load is dw.
    if pg >= 12 and workload != "dw":
        conf["jit"] = "off"
    conf["wal_compression"] = "lz4" if pg >= 15 else "on"
    if shape.cpus >= 32:
        conf["autovacuum_max_workers"] = "5"
    elif shape.cpus >= 16:
        conf["autovacuum_max_workers"] = "4"
    # With maintenance_work_mem up to 8 GB, each autovacuum worker is held to 2 GB.
    if maintenance_work_mem >= _AUTOVACUUM_WORK_MEM_KB:
        conf["autovacuum_work_mem"] = format_size_kb(_AUTOVACUUM_WORK_MEM_KB)
    if pg >= 18:
        # Linux: io_uring, so PGTune sets no io_workers (those serve io_method = worker).
        conf["io_method"] = "io_uring"
    conf["min_wal_size"] = format_size_kb(_MIN_WAL_SIZE_KB[workload])
    conf["max_wal_size"] = format_size_kb(_MAX_WAL_SIZE_KB[workload])
    conf.update((name, str(value)) for name, value in parallel.items())
    return conf


def _wal_buffers(shared_buffers_kb: int) -> int:
    wal_buffers = min(3 * shared_buffers_kb // 100, _WAL_BUFFERS_MAX_KB)
    if _WAL_BUFFERS_ROUND_UP_ABOVE_KB < wal_buffers < _WAL_BUFFERS_MAX_KB:
        wal_buffers = _WAL_BUFFERS_MAX_KB
    return max(wal_buffers, _WAL_BUFFERS_MIN_KB)


def _random_page_cost(shape: HostShape) -> str:
    # A data warehouse larger than RAM keeps the default 4 even on SSD: a low cost there makes
    # the planner pick index scans for big reads.
    if shape.disk == "hdd" or shape.workload == "dw":
        return "4"
    return "1.1"


def _parallel_settings(shape: HostShape) -> dict[str, int]:
    if shape.cpus < 4:
        return {}
    half = -(-shape.cpus // 2)  # ceil(cpus / 2)
    settings = {
        "max_worker_processes": shape.cpus,
        # Beyond 4 workers per gather PGTune sees no clear gain, except for dw.
        "max_parallel_workers_per_gather": half if shape.workload == "dw" else min(half, 4),
        "max_parallel_workers": shape.cpus,  # PostgreSQL 10+, our minimum
    }
    if shape.pg_major >= 11:
        settings["max_parallel_maintenance_workers"] = min(half, 4)
    return settings


_SIZE_RE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)\s*")
# PostgreSQL's memory units, case-sensitive as the server treats them.
_UNIT_KB: dict[str, Fraction] = {
    "": Fraction(1),
    "B": Fraction(1, 1024),
    "kB": Fraction(1),
    "MB": Fraction(KB_PER_MB),
    "GB": Fraction(KB_PER_GB),
    "TB": Fraction(KB_PER_TB),
}


def parse_size_kb(value: str | int) -> int:
    """A memory size in kB: ``"128MB"``, ``"2GB"``, ``"64kB"``, ``"1.5GB"``, ``"8192"``, ``8192``.

    A bare number is taken as kB. (PostgreSQL reads a bare number in the setting's own base unit,
    which is kB for work_mem and maintenance_work_mem but 8 kB pages for shared_buffers; spell
    units out in configuration.) Units are case-sensitive, as in PostgreSQL; the result must be a
    whole, non-negative number of kB. Raises ``ValueError`` naming the value otherwise.
    """
    if isinstance(value, bool):
        raise ValueError(f"size {value!r}: expected a size like '128MB' or a number of kB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size {value!r}: must not be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"size {value!r}: expected a string like '128MB' or an integer of kB")
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise ValueError(
            f"size {value!r}: expected a non-negative number with an optional unit "
            f"({', '.join(u for u in _UNIT_KB if u)}), e.g. '128MB'"
        )
    unit = match["unit"]
    if unit not in _UNIT_KB:
        raise ValueError(
            f"size {value!r}: unknown unit {unit!r}; valid units are "
            f"{', '.join(u for u in _UNIT_KB if u)} (case-sensitive)"
        )
    kb = Fraction(match["number"]) * _UNIT_KB[unit]
    if kb.denominator != 1:
        raise ValueError(f"size {value!r}: is not a whole number of kB")
    return int(kb)


def format_size_kb(kb: int) -> str:
    """Render kB the way PGTune does: whole GB if exact, else whole MB if exact, else kB.

    Zero renders as ``0kB`` (PGTune would say ``0GB``; it never outputs zero).
    """
    _require_int("size in kB", kb, minimum=0)
    if kb == 0:
        return "0kB"
    if kb % KB_PER_GB == 0:
        return f"{kb // KB_PER_GB}GB"
    if kb % KB_PER_MB == 0:
        return f"{kb // KB_PER_MB}MB"
    return f"{kb}kB"
