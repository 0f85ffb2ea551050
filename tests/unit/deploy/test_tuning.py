"""deploy.tuning against PGTune (le0pard/pgtune @ 7caef27, configurationSlice.js).

Every expected value below was worked out by hand from PGTune's selectors (Linux, default
"mid_ram" database size), with the arithmetic in the comments; none was copied from compute().
"""

from __future__ import annotations

import pytest

from deploy.tuning import HostShape, compute, format_size_kb, parse_size_kb

GIB_KB = 1024 * 1024

# 1 GiB, 1 CPU, web, SSD, PG 15.  RAM = 1048576 kB.
#   max_connections  web default                          200
#   shared_buffers   1048576/4 = 262144 kB                256MB
#   effective_cache  1048576*3/4 = 786432 kB              768MB
#   maintenance      1048576/16 = 65536 kB                64MB
#   wal_buffers      floor(3*262144/100) = floor(7864.32) 7864kB (not 14-16 MB, >= 32 kB)
#   work_mem         (1048576-262144)/((200+8)*3) = 786432/624 = 1260.3 -> 1260 < 4096 floor -> 4MB
#                    (1 CPU: no parallel settings, so PGTune uses the default 8 worker processes)
#   huge_pages       256MB < 2GB -> off;  jit off (web, PG >= 12);  wal_compression lz4 (PG >= 15)
#   min/max_wal_size web 1GB / 4GB
WEB_1G_1CPU = {
    "max_connections": "200",
    "shared_buffers": "256MB",
    "effective_cache_size": "768MB",
    "maintenance_work_mem": "64MB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "7864kB",
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "work_mem": "4MB",
    "huge_pages": "off",
    "jit": "off",
    "wal_compression": "lz4",
    "min_wal_size": "1GB",
    "max_wal_size": "4GB",
}

# 4 GiB, 2 CPUs, oltp, SSD, PG 15.  RAM = 4194304 kB.
#   max_connections  oltp default 300
#   shared_buffers   1048576 kB = 1GB;  effective_cache 3145728 kB = 3GB;  maintenance /16 = 256MB
#   wal_buffers      floor(3*1048576/100) = 31457 kB > 16384 -> capped 16MB
#   work_mem         (4194304-1048576)/((300+8)*3) = 3145728/924 = 3404.5 -> 3404 < 4096 -> 4MB
#   huge_pages off (1GB < 2GB); min/max_wal_size oltp 2GB / 8GB
OLTP_4G_2CPU = {
    "max_connections": "300",
    "shared_buffers": "1GB",
    "effective_cache_size": "3GB",
    "maintenance_work_mem": "256MB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "work_mem": "4MB",
    "huge_pages": "off",
    "jit": "off",
    "wal_compression": "lz4",
    "min_wal_size": "2GB",
    "max_wal_size": "8GB",
}

# 16 GiB, 8 CPUs, mixed, SSD, PG 15.  RAM = 16777216 kB.
#   max_connections  mixed default 100
#   shared_buffers   4194304 kB = 4GB;  effective_cache 12582912 kB = 12GB;  maintenance /16 = 1GB
#   wal_buffers      3% of 4GB = 125829 kB -> 16MB
#   parallel (8 >= 4 CPUs): max_worker_processes 8, per_gather ceil(8/2)=4 (cap 4),
#                    max_parallel_workers 8, maintenance workers min(ceil(8/2), 4) = 4
#   work_mem         (16777216-4194304)/((100+8)*3) = 12582912/324 = 38836.2; mixed /2 = 19418.07
#                    -> 19418kB
#   huge_pages try (4GB >= 2GB); jit off (mixed, PG >= 12)
#   autovacuum: 8 CPUs < 16 and maintenance 1GB < 2GB -> neither setting
#   min/max_wal_size mixed 1GB / 4GB
MIXED_16G_8CPU = {
    "max_connections": "100",
    "shared_buffers": "4GB",
    "effective_cache_size": "12GB",
    "maintenance_work_mem": "1GB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "work_mem": "19418kB",
    "huge_pages": "try",
    "jit": "off",
    "wal_compression": "lz4",
    "min_wal_size": "1GB",
    "max_wal_size": "4GB",
    "max_worker_processes": "8",
    "max_parallel_workers_per_gather": "4",
    "max_parallel_workers": "8",
    "max_parallel_maintenance_workers": "4",
}

# 64 GiB, 16 CPUs, dw, SSD, PG 15.  RAM = 67108864 kB.
#   max_connections  dw default 40
#   shared_buffers   16777216 kB = 16GB;  effective_cache 50331648 kB = 48GB
#   maintenance      dw RAM/8 = 8388608 kB = 8GB, at the 8GB cap (>= cap -> cap) -> 8GB
#   default_statistics_target dw 500; random_page_cost dw on SSD, mid_ram -> 4
#   parallel: max_worker_processes 16, per_gather ceil(16/2) = 8 (dw: no cap of 4),
#             max_parallel_workers 16, maintenance workers min(8, 4) = 4
#   work_mem  (67108864-16777216)/((40+16)*3) = 50331648/168 = 299593.1; dw /2 = 149796.6
#             -> 149796kB
#   huge_pages try; jit omitted for dw; autovacuum_max_workers 4 (16 <= CPUs < 32);
#   autovacuum_work_mem 2GB (maintenance 8GB >= 2GB); min/max_wal_size dw 4GB / 16GB
DW_64G_16CPU = {
    "max_connections": "40",
    "shared_buffers": "16GB",
    "effective_cache_size": "48GB",
    "maintenance_work_mem": "8GB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
    "default_statistics_target": "500",
    "random_page_cost": "4",
    "effective_io_concurrency": "200",
    "work_mem": "149796kB",
    "huge_pages": "try",
    "wal_compression": "lz4",
    "autovacuum_max_workers": "4",
    "autovacuum_work_mem": "2GB",
    "min_wal_size": "4GB",
    "max_wal_size": "16GB",
    "max_worker_processes": "16",
    "max_parallel_workers_per_gather": "8",
    "max_parallel_workers": "16",
    "max_parallel_maintenance_workers": "4",
}

# 8 GiB, 4 CPUs, oltp, HDD, PG 14, max_connections 50 given.  RAM = 8388608 kB.
#   shared_buffers   2097152 kB = 2GB -> huge_pages try (>= 2GB, the boundary itself)
#   effective_cache 6291456 kB = 6GB;  maintenance /16 = 524288 kB = 512MB;  wal_buffers 16MB
#   random_page_cost HDD 4;  effective_io_concurrency HDD 2
#   parallel (PG 14): max_worker_processes 4, per_gather ceil(4/2) = 2, max_parallel_workers 4,
#             maintenance workers 2
#   work_mem  (8388608-2097152)/((50+4)*3) = 6291456/162 = 38836.1 -> 38836kB (oltp: whole share)
#   jit off (PG 14 >= 12); wal_compression on (PG 10-14: pglz); min/max_wal_size 2GB / 8GB
OLTP_8G_4CPU_HDD_PG14 = {
    "max_connections": "50",
    "shared_buffers": "2GB",
    "effective_cache_size": "6GB",
    "maintenance_work_mem": "512MB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
    "default_statistics_target": "100",
    "random_page_cost": "4",
    "effective_io_concurrency": "2",
    "work_mem": "38836kB",
    "huge_pages": "try",
    "jit": "off",
    "wal_compression": "on",
    "min_wal_size": "2GB",
    "max_wal_size": "8GB",
    "max_worker_processes": "4",
    "max_parallel_workers_per_gather": "2",
    "max_parallel_workers": "4",
    "max_parallel_maintenance_workers": "2",
}

# 256 GiB, 32 CPUs, web, SAN, PG 18.  RAM = 268435456 kB.
#   shared_buffers 67108864 kB = 64GB; effective_cache 201326592 kB = 192GB
#   maintenance    RAM/16 = 16777216 kB = 16GB -> capped at 8GB; autovacuum_work_mem 2GB
#   effective_io_concurrency SAN 300; random_page_cost SAN, web -> 1.1
#   parallel: 32 / per_gather min(16, 4) = 4 / 32 / maintenance min(16, 4) = 4
#   work_mem  (268435456-67108864)/((200+32)*3) = 201326592/696 = 289262.3 -> 289262kB
#   autovacuum_max_workers 5 (>= 32 CPUs); io_method io_uring (PG 18 on Linux, so no io_workers)
WEB_256G_32CPU_SAN_PG18 = {
    "max_connections": "200",
    "shared_buffers": "64GB",
    "effective_cache_size": "192GB",
    "maintenance_work_mem": "8GB",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "300",
    "work_mem": "289262kB",
    "huge_pages": "try",
    "jit": "off",
    "wal_compression": "lz4",
    "autovacuum_max_workers": "5",
    "autovacuum_work_mem": "2GB",
    "io_method": "io_uring",
    "min_wal_size": "1GB",
    "max_wal_size": "4GB",
    "max_worker_processes": "32",
    "max_parallel_workers_per_gather": "4",
    "max_parallel_workers": "32",
    "max_parallel_maintenance_workers": "4",
}


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        pytest.param(HostShape(1 * GIB_KB, 1, "ssd", "web"), WEB_1G_1CPU, id="1G-1cpu-web"),
        pytest.param(HostShape(4 * GIB_KB, 2, "ssd", "oltp"), OLTP_4G_2CPU, id="4G-2cpu-oltp"),
        pytest.param(
            HostShape(16 * GIB_KB, 8, "ssd", "mixed"), MIXED_16G_8CPU, id="16G-8cpu-mixed"
        ),
        pytest.param(HostShape(64 * GIB_KB, 16, "ssd", "dw"), DW_64G_16CPU, id="64G-16cpu-dw"),
        pytest.param(
            HostShape(8 * GIB_KB, 4, "hdd", "oltp", pg_major=14, max_connections=50),
            OLTP_8G_4CPU_HDD_PG14,
            id="8G-4cpu-oltp-hdd-pg14",
        ),
        pytest.param(
            HostShape(256 * GIB_KB, 32, "san", "web", pg_major=18),
            WEB_256G_32CPU_SAN_PG18,
            id="256G-32cpu-web-san-pg18",
        ),
    ],
)
def test_compute_matches_pgtune(shape: HostShape, expected: dict[str, str]) -> None:
    assert compute(shape) == expected


def test_compute_keeps_pgtune_output_order() -> None:
    # postgresql.conf is rendered in this order; a stable order keeps re-deploys change-free.
    assert list(compute(HostShape(64 * GIB_KB, 16, "ssd", "dw"))) == list(DW_64G_16CPU)


@pytest.mark.parametrize(
    ("ram_kb", "wal_buffers"),
    [
        # shared_buffers 512000 kB; 3% = 15360 kB, between 14 MB and 16 MB -> rounded up to 16MB.
        pytest.param(2048000, "16MB", id="round-up-near-16MB"),
        # shared_buffers 1024 kB; 3% = 30 kB < 32 kB minimum -> 32kB.
        pytest.param(4096, "32kB", id="minimum-32kB"),
        # shared_buffers 458752 kB (448 MB); 3% = floor(13762.56) = 13762 kB <= 14 MB -> kept.
        pytest.param(1835008, "13762kB", id="below-round-up-band"),
    ],
)
def test_wal_buffers_rounding(ram_kb: int, wal_buffers: str) -> None:
    assert compute(HostShape(ram_kb, 2))["wal_buffers"] == wal_buffers


@pytest.mark.parametrize(
    ("pg_major", "present", "absent"),
    [
        # PG 10: no parallel maintenance workers (11+), no jit (12+), pglz wal_compression.
        (10, {"wal_compression": "on"}, {"max_parallel_maintenance_workers", "jit", "io_method"}),
        (11, {"max_parallel_maintenance_workers": "2", "wal_compression": "on"}, {"jit"}),
        (12, {"jit": "off", "wal_compression": "on"}, {"io_method"}),
        (15, {"jit": "off", "wal_compression": "lz4"}, {"io_method"}),
        (18, {"io_method": "io_uring"}, {"io_workers"}),
    ],
)
def test_version_gates(pg_major: int, present: dict[str, str], absent: set[str]) -> None:
    conf = compute(HostShape(8 * GIB_KB, 4, workload="web", pg_major=pg_major))
    assert {name: conf.get(name) for name in present} == present
    assert absent.isdisjoint(conf)


def test_fewer_than_four_cpus_sets_no_parallel_settings() -> None:
    conf = compute(HostShape(32 * GIB_KB, 3, workload="mixed"))
    assert not {name for name in conf if "parallel" in name or name == "max_worker_processes"}


def test_huge_pages_switch_at_two_gigabytes_of_shared_buffers() -> None:
    # RAM 8 GiB - 4 kB -> shared_buffers 2 GiB - 1 kB: just under the threshold.
    assert compute(HostShape(8 * GIB_KB - 4, 2))["huge_pages"] == "off"
    assert compute(HostShape(8 * GIB_KB, 2))["huge_pages"] == "try"


def test_given_max_connections_drives_work_mem() -> None:
    # 4 GiB, 4 CPUs, web, 9999 connections: 3145728/((9999+4)*3) = 104.8 kB -> floored to 4MB
    # (PGTune's own test case for the floor).
    conf = compute(HostShape(4 * GIB_KB, 4, workload="web", max_connections=9999))
    assert conf["max_connections"] == "9999"
    assert conf["work_mem"] == "4MB"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory_kb": 0, "cpus": 1}, "memory_kb"),
        ({"memory_kb": 1024, "cpus": 0}, "cpus"),
        ({"memory_kb": 1024, "cpus": True}, "cpus"),
        ({"memory_kb": 1024, "cpus": 1, "workload": "desktop"}, "workload"),
        ({"memory_kb": 1024, "cpus": 1, "disk": "nvme"}, "disk"),
        ({"memory_kb": 1024, "cpus": 1, "pg_major": 9}, "pg_major"),
        ({"memory_kb": 1024, "cpus": 1, "max_connections": 0}, "max_connections"),
    ],
)
def test_host_shape_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HostShape(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "kb"),
    [
        ("128MB", 131072),
        ("2GB", 2097152),
        ("64kB", 64),
        ("8192", 8192),
        ("1TB", 1073741824),
        ("1.5GB", 1572864),
        ("2048B", 2),
        (" 16 MB ", 16384),
        ("0", 0),
        (4096, 4096),
    ],
)
def test_parse_size_kb(text: str | int, kb: int) -> None:
    assert parse_size_kb(text) == kb


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("128mb", "unknown unit 'mb'"),
        ("128KB", "unknown unit 'KB'"),
        ("2 GiB", "unknown unit 'GiB'"),
        ("", "expected a non-negative number"),
        ("MB", "expected a non-negative number"),
        ("-1MB", "expected a non-negative number"),
        ("1e3kB", "expected a non-negative number"),
        ("12 34", "expected a non-negative number"),
        ("1000B", "not a whole number of kB"),
        ("0.5kB", "not a whole number of kB"),
        (-1, "must not be negative"),
        (True, "expected a size"),
        (1.5, "expected a string"),
    ],
)
def test_parse_size_kb_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size_kb(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kb", "text"),
    [
        (0, "0kB"),
        (64, "64kB"),
        (7864, "7864kB"),
        (1024, "1MB"),
        (1536, "1536kB"),
        (131072, "128MB"),
        (1048576, "1GB"),
        (1572864, "1536MB"),
        (8388608, "8GB"),
        (1073741824, "1024GB"),
    ],
)
def test_format_size_kb(kb: int, text: str) -> None:
    assert format_size_kb(kb) == text


@pytest.mark.parametrize("kb", [0, 1, 32, 1023, 1024, 1025, 7864, 19418, 1048575, 1048576, 3 << 30])
def test_format_then_parse_round_trips(kb: int) -> None:
    assert parse_size_kb(format_size_kb(kb)) == kb


@pytest.mark.parametrize("text", ["64kB", "7864kB", "128MB", "1536MB", "2GB", "1024GB"])
def test_parse_then_format_round_trips_canonical_text(text: str) -> None:
    assert format_size_kb(parse_size_kb(text)) == text


@pytest.mark.parametrize("kb", [-1, True, 1.0])
def test_format_size_kb_rejects(kb: object) -> None:
    with pytest.raises(ValueError, match="size in kB"):
        format_size_kb(kb)  # type: ignore[arg-type]
