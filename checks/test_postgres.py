"""Infrastructure and security items of the readiness list for every database host.

Each check asserts runtime state (SQL, systemd, sockets, files), and its message says what is
wrong. CIS PostgreSQL Benchmark items are named where one fits.
"""

from __future__ import annotations

import ipaddress

from bgdb.remote import Target
from deploy.hostfacts import tuned_config
from deploy.settings import Data


def test_postgresql_running(db: Target) -> None:
    """PostgreSQL 12+ is running and enabled"""
    svc = db.host.service(db.pg.unit)
    assert svc.is_running, f"{db.pg.unit} is not running:\n{db.journal(db.pg.unit)}"
    assert svc.is_enabled or db.host.service("postgresql").is_enabled, \
        f"{db.pg.unit} does not start at boot"
    version = int(db.setting("server_version_num"))
    assert version >= 120000, f"PostgreSQL {version} is older than 12"


def test_ssl_on_and_enforced(db: Target) -> None:
    """SSL/TLS on, TLS 1.2+, and every remote connection must use it (CIS 6.x)"""
    assert db.setting("ssl") == "on", "ssl is off: clients can connect in plaintext"
    assert db.setting("ssl_min_protocol_version") in ("TLSv1.2", "TLSv1.3"), \
        f"ssl_min_protocol_version is {db.setting('ssl_min_protocol_version')}"
    plain = db.sql("SELECT line_number, type, database, user_name, auth_method "
                   "FROM pg_hba_file_rules WHERE type = 'host' AND auth_method <> 'reject'")
    assert not plain, f"pg_hba allows remote connections without TLS: {plain}"


def test_pg_hba_strict(db: Target) -> None:
    """pg_hba has no trust, password or md5 lines and parses cleanly (CIS 4.x)"""
    weak = db.sql("SELECT line_number, type, database, user_name, address, auth_method "
                  "FROM pg_hba_file_rules WHERE auth_method IN ('trust', 'password', 'md5') "
                  "OR error IS NOT NULL")
    assert not weak, f"weak or broken pg_hba lines (line, type, db, user, address, method): {weak}"


def test_no_public_access(db: Target) -> None:
    """No pg_hba line lets the Internet, or a range wider than the bound, log in"""
    data = Data(db.inv.data)
    bound = {v: data.get(f"postgres_cidr_min_prefix_v{v}") for v in (4, 6)}
    rows = db.sql("SELECT line_number, address, netmask FROM pg_hba_file_rules WHERE type LIKE "
                  "'host%' AND auth_method <> 'reject' AND netmask IS NOT NULL")
    wide = []
    for line, address, netmask in rows:
        prefix = bin(int(ipaddress.ip_address(netmask))).count("1")
        net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        if net.prefixlen < bound[net.version]:
            wide.append(f"line {line}: {net}")
    loud = " (postgres_allow_public_access = True)" if data.get(
        "postgres_allow_public_access") else ""
    assert not wide, f"pg_hba lets wide ranges log in{loud}: {', '.join(wide)}: the database is " \
        "open to the Internet"


def test_password_encryption(db: Target) -> None:
    """password_encryption is scram-sha-256 and no role has an md5 password"""
    assert db.setting("password_encryption") == "scram-sha-256", \
        f"password_encryption = {db.setting('password_encryption')}"
    md5 = db.sql("SELECT rolname FROM pg_authid WHERE rolpassword LIKE 'md5%'")
    assert not md5, f"roles with md5 password hashes: {md5}"


def test_listen_addresses(db: Target) -> None:
    """listen_addresses names the service addresses, never '*'"""
    listen = db.setting("listen_addresses")
    assert "*" not in listen and "0.0.0.0" not in listen, f"listen_addresses = '{listen}'"
    expected = ",".join(db.pg.listen_addresses) or f"{db.inv.address},localhost"
    assert listen == expected, f"listen_addresses = '{listen}', deploy asked for '{expected}'"


def test_data_directory_protected(db: Target) -> None:
    """PGDATA is mode 0700, owned by postgres, with data checksums on"""
    data_dir = db.setting("data_directory")
    f = db.host.file(data_dir)
    assert f.user == "postgres" and f.mode == 0o700, \
        f"{data_dir} is {oct(f.mode)} owned by {f.user}; expected 0700 postgres"
    assert db.setting("data_checksums") == "on", "data checksums are off (initdb --data-checksums)"


def test_audit_logging(db: Target) -> None:
    """Connections, disconnections, lock waits and slow statements are logged (CIS 3.x)"""
    for name in ("log_connections", "log_disconnections", "log_lock_waits", "log_checkpoints"):
        assert db.setting(name) == "on", f"{name} is off"
    want = db.pg.log_min_duration_ms
    got = db.value("SELECT setting FROM pg_settings WHERE name = 'log_min_duration_statement'")
    assert got == str(want), f"log_min_duration_statement = {got} ms, postgres_log_min_" \
        f"duration_ms says {want} (the seed: 1000)"


def test_pg_stat_statements(db: Target) -> None:
    """pg_stat_statements is preloaded and installed in the application database"""
    assert "pg_stat_statements" in db.setting("shared_preload_libraries"), \
        "pg_stat_statements is not in shared_preload_libraries"
    assert db.value("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'") \
        == "1", f"extension pg_stat_statements missing in {db.app.database}"
    assert int(db.value("SELECT count(*) FROM pg_stat_statements")) > 0, \
        "pg_stat_statements returns no rows"


def test_sizing_matches_host(db: Target) -> None:
    """Memory and planner settings match the tuning formulas for this host"""
    expected = tuned_config(db.pg, db.facts)  # the deploy's function on the deploy's facts
    names = ["shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem",
             "max_connections", "random_page_cost", "effective_io_concurrency", "wal_buffers",
             "min_wal_size", "max_wal_size", "checkpoint_completion_target"]
    rows = {name: (setting, unit) for name, setting, unit in db.sql(
        "SELECT name, setting, coalesce(unit, '') FROM pg_settings WHERE name IN "
        f"({', '.join(repr(n) for n in names)})")}
    wrong = []
    for name in names:
        setting, unit = rows.get(name, ("?", ""))
        if _as_unit(expected[name], unit) != setting:
            shown = f"{setting} x {unit}" if unit == "8kB" else f"{setting}{unit}"
            wrong.append(f"{name}={shown} (expected {expected[name]})")
    assert not wrong, "sizing differs from the tuning formulas: " + ", ".join(wrong)


def test_firewall_active(db: Target) -> None:
    """Host firewall limits the database port to the allowed networks"""
    if not db.pg.firewall:
        return
    out = db.host.run("nft list table inet bgdb")
    assert out.rc == 0, f"nftables table inet bgdb is missing: {out.stderr.strip()}"
    assert f"tcp dport {db.pg.port}" in out.stdout or f"{db.pg.port}" in out.stdout, \
        f"no rule for port {db.pg.port} in table inet bgdb"
    for cidr in db.pg.allowed_cidrs:
        text = str(cidr).removesuffix("/32")
        assert text in out.stdout, f"allowed network {cidr} is not in the firewall's client set"


def test_kernel_settings(db: Target) -> None:
    """Kernel settings for PostgreSQL are installed (vm.swappiness, overcommit)"""
    f = db.host.file("/etc/sysctl.d/60-bgdb-postgresql.conf")
    assert f.exists, "/etc/sysctl.d/60-bgdb-postgresql.conf is missing"
    assert "vm.swappiness = 1" in f.content_string, "vm.swappiness is not set to 1"


def _as_unit(value: str, unit: str) -> str:
    """A configured value as pg_settings shows it in `unit`: sizes in whole units, rounded as
    PostgreSQL does (rint: half to even, like round()); anything else is compared as written."""
    from deploy.tuning import parse_size_kb

    unit_kb = {"8kB": 8, "kB": 1, "MB": 1024}.get(unit)
    if unit_kb is None:
        return value
    try:
        return str(round(parse_size_kb(value) / unit_kb))
    except ValueError:
        return value
