"""Host data + POSTGRESQL_* environment -> one frozen, validated settings object per concern.

Every check happens here, before any operation: a bad value raises SettingsError naming the key,
the value, where it came from and what is allowed. Templates and checks read these objects only.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import tuning

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# GUCs whose value is a memory size, checked for sense against the host's RAM.
_MEMORY_GUCS = ("shared_buffers", "work_mem", "maintenance_work_mem", "effective_cache_size")


class SettingsError(ValueError):
    def __init__(self, key: str, value: object, allowed: str, source: str | None = None) -> None:
        self.key = key
        origin = f" (from {source})" if source else ""
        super().__init__(f"settings error: {key} = {value!r}{origin}: {allowed}")


class Data:
    """Looks a key up in the environment override first, then in host/group data."""

    def __init__(self, data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
        self._data = data
        self._env = os.environ if env is None else env

    def raw(self, key: str, default: Any = None, env: str | None = None) -> tuple[Any, str | None]:
        if env and self._env.get(env, "") != "":
            return self._env[env], env
        value = self._data.get(key, default)
        return (default if value is None else value), None

    def integer(self, key: str, default: int, lo: int, hi: int, env: str | None = None) -> int:
        value, src = self.raw(key, default, env)
        try:
            number = int(value)
            if isinstance(value, bool) or (isinstance(value, float) and number != value):
                raise ValueError
        except (TypeError, ValueError):
            raise SettingsError(key, value, f"expected an integer {lo}-{hi}", src) from None
        if not lo <= number <= hi:
            raise SettingsError(key, value, f"expected an integer {lo}-{hi}", src)
        return number

    def choice(self, key: str, default: str, allowed: Sequence[str], env: str | None = None) -> str:
        value, src = self.raw(key, default, env)
        if value not in allowed:
            raise SettingsError(key, value, f"expected one of {', '.join(allowed)}", src)
        return str(value)

    def flag(self, key: str, default: bool) -> bool:
        value, _ = self.raw(key, default)
        if not isinstance(value, bool):
            raise SettingsError(key, value, "expected True or False")
        return value

    def ident(self, key: str, default: str, env: str | None = None) -> str:
        value, src = self.raw(key, default, env)
        if not isinstance(value, str) or not _IDENT.match(value):
            raise SettingsError(key, value, "expected a lowercase SQL identifier",
                                src)
        return value

    def cidrs(self, key: str, *, required: bool) -> tuple[IPNetwork, ...]:
        value, _ = self.raw(key, [])
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise SettingsError(key, value, "expected a list of CIDRs like ['10.0.0.0/24']")
        if required and not value:
            raise SettingsError(key, value, "expected at least one CIDR: nobody could connect")
        nets = []
        for item in value:
            try:
                nets.append(ipaddress.ip_network(str(item), strict=True))
            except ValueError as exc:
                raise SettingsError(key, item, f"not a valid CIDR ({exc})") from None
        return tuple(nets)

    def path(self, key: str, *, must_exist: bool = True) -> Path | None:
        value, _ = self.raw(key)
        if value is None:
            return None
        p = Path(str(value)).expanduser()
        if must_exist and not p.is_file():
            raise SettingsError(key, str(value), "file does not exist on this machine")
        return p

    def mapping(self, key: str) -> dict[str, str]:
        value, _ = self.raw(key, {})
        if not isinstance(value, Mapping):
            raise SettingsError(key, value, "expected a dict of name -> value")
        return {str(k): str(v) for k, v in value.items()}


# --- application (the seed's POSTGRESQL_* variables) -------------------------------------------

@dataclass(frozen=True)
class AppSettings:
    database: str
    user: str
    port: int
    ssl_mode: str
    pool_size: int
    timeout: int
    host: str | None  # where agents connect; None = the primary's service address

    @property
    def password_env(self) -> str:
        return "POSTGRESQL_PASSWORD"


def app_settings(data: Data) -> AppSettings:
    host, _ = data.raw("app_host", None, "POSTGRESQL_HOST")
    return AppSettings(
        database=data.ident("app_database", "background_agents", "POSTGRESQL_DATABASE"),
        user=data.ident("app_user", "bg_agents_user", "POSTGRESQL_USER"),
        port=data.integer("app_port", 5432, 1, 65535, "POSTGRESQL_PORT"),
        ssl_mode=data.choice("app_ssl_mode", "verify-full", SSL_MODES, "POSTGRESQL_SSL_MODE"),
        pool_size=data.integer("app_pool_size", 10, 1, 10000, "POSTGRESQL_POOL_SIZE"),
        timeout=data.integer("app_timeout", 30, 1, 3600, "POSTGRESQL_TIMEOUT"),
        host=str(host) if host else None,
    )


# --- PostgreSQL server ---------------------------------------------------------------------------

# pgaudit.log's classes (pgaudit README, "pgaudit.log"); a class may be subtracted with '-'.
PGAUDIT_CLASSES = ("read", "write", "function", "role", "ddl", "misc", "misc_set", "all")
PGAUDIT_DEFAULT_LOG = ("ddl", "role")
# What the readiness check proves is logged: schema and privilege changes (CIS 3.2).
PGAUDIT_REQUIRED = frozenset(PGAUDIT_DEFAULT_LOG)


@dataclass(frozen=True)
class SslFiles:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class PostgresSettings:
    version: int | None  # None: the distribution's default, decided from the host (hostfacts)
    port: int
    cluster: str
    locale: str
    workload: str
    disk: str
    memory_mb: int | None  # tune for this much RAM instead of what the host reports
    listen_addresses: tuple[str, ...]  # () = the host's service address + localhost
    allowed_cidrs: tuple[IPNetwork, ...]
    admin_cidrs: tuple[IPNetwork, ...]  # break-glass superuser access; empty by default
    monitoring_cidrs: tuple[IPNetwork, ...]
    overrides: dict[str, str]
    ssl_files: SslFiles | None  # None: the bundle's own CA issues the certificate
    firewall: bool
    ssh_port: int
    app_connection_limit: int
    superuser_reserved_connections: int
    extra_ports: tuple[int, ...] = field(default=())  # PgBouncer, exporter: opened by firewall
    pgaudit: bool = True  # session audit logging (CIS 3.2); False drops it on the next deploy
    pgaudit_log: tuple[str, ...] = PGAUDIT_DEFAULT_LOG
    pgaudit_log_relation: bool = False  # one line per relation of SELECT/DML: volume
    pgaudit_log_parameter: bool = False  # bind parameters: secrets and personal data in logs

    @property
    def data_dir(self) -> str:
        return f"/var/lib/postgresql/{self.version}/{self.cluster}"

    @property
    def conf_dir(self) -> str:
        return f"/etc/postgresql/{self.version}/{self.cluster}"

    @property
    def unit(self) -> str:
        return f"postgresql@{self.version}-{self.cluster}"

    @property
    def preload_libraries(self) -> tuple[str, ...]:
        """shared_preload_libraries the bundle needs (roles.py creates their extensions)."""
        return ("pg_stat_statements", "pgaudit") if self.pgaudit else ("pg_stat_statements",)

    @property
    def audit_config(self) -> dict[str, str]:
        """pgaudit's lines for the drop-in; none when auditing is off."""
        if not self.pgaudit:
            return {}
        return {"pgaudit.log": ", ".join(self.pgaudit_log),
                "pgaudit.log_relation": "on" if self.pgaudit_log_relation else "off",
                "pgaudit.log_parameter": "on" if self.pgaudit_log_parameter else "off"}


def pgaudit_included(classes: Sequence[str]) -> set[str]:
    """The classes a pgaudit.log list logs: 'all' expands, '-class' subtracts."""
    names = [c.strip().lower() for c in classes]
    included = set(PGAUDIT_CLASSES[:-1]) if "all" in names else set(names)
    return included - {c[1:] for c in names if c.startswith("-")}


def pgaudit_classes(data: Data, key: str = "postgres_pgaudit_log") -> tuple[str, ...]:
    """pgaudit.log as a list (or 'ddl, role'): pgaudit's classes only, covering ddl and role."""
    value, src = data.raw(key, list(PGAUDIT_DEFAULT_LOG))
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not items:
        raise SettingsError(key, value, "expected a list of pgaudit classes like "
                            "['ddl', 'role']", src)
    classes: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if not isinstance(item, str) or name.lstrip("-") not in PGAUDIT_CLASSES:
            raise SettingsError(key, item, "not a pgaudit.log class: expected one of "
                                f"{', '.join(PGAUDIT_CLASSES)} (or '-class' to subtract)", src)
        classes.append(name)
    if not pgaudit_included(classes) >= PGAUDIT_REQUIRED:
        raise SettingsError(key, value, "must log at least ddl and role (CIS 3.2); set "
                            "postgres_pgaudit = False to turn audit logging off", src)
    return tuple(dict.fromkeys(classes))


def postgres_settings(data: Data) -> PostgresSettings:
    overrides = data.mapping("postgres_overrides")
    for name in overrides:
        if not re.match(r"^[a-z_][a-z0-9_.]*$", name):
            raise SettingsError("postgres_overrides", name, "not a PostgreSQL setting name")
        if name.startswith("pgaudit."):
            raise SettingsError(f"postgres_overrides.{name}", overrides[name],
                                "pgaudit is set by the postgres_pgaudit* keys, not an override")
    pgaudit = data.flag("postgres_pgaudit", True)
    if "shared_preload_libraries" in overrides:
        libs = {lib.strip() for lib in overrides["shared_preload_libraries"].split(",")}
        needed = ["pg_stat_statements", *(["pgaudit"] if pgaudit else [])]
        missing = [lib for lib in needed if lib not in libs]
        if missing:
            raise SettingsError("postgres_overrides.shared_preload_libraries",
                                overrides["shared_preload_libraries"],
                                f"must keep {', '.join(missing)} (the deploy creates its "
                                "extension; pgaudit: see postgres_pgaudit)")
    for name in _MEMORY_GUCS:
        if name in overrides:
            try:
                tuning.parse_size_kb(overrides[name])
            except ValueError as exc:
                gkey = f"postgres_overrides.{name}"
                raise SettingsError(gkey, overrides[name], str(exc)) from None
    cert = data.path("postgres_ssl_cert_file")
    key = data.path("postgres_ssl_key_file")
    ca = data.path("postgres_ssl_ca_file")
    given = [p for p in (cert, key, ca) if p is not None]
    if given and len(given) != 3:
        raise SettingsError("postgres_ssl_cert_file", str(cert),
                            "set all of postgres_ssl_cert_file, _key_file and _ca_file, or none")
    memory, _ = data.raw("postgres_memory_mb")
    listen, _ = data.raw("postgres_listen_addresses", [])
    if listen == "*" or (isinstance(listen, list) and "*" in listen):
        raise SettingsError("postgres_listen_addresses", listen,
                            "'*' exposes every interface: list the service addresses")
    for addr in listen:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            if addr != "localhost":
                raise SettingsError("postgres_listen_addresses", addr,
                                    "expected IP addresses or 'localhost'") from None
    return PostgresSettings(
        version=None if data.raw("postgres_version")[0] is None
        else data.integer("postgres_version", 15, 12, 17),
        port=data.integer("postgres_port", 5432, 1, 65535),
        cluster=data.ident("postgres_cluster", "main"),
        locale=data.choice("postgres_locale", "C.UTF-8", ("C.UTF-8", "en_US.UTF-8", "C")),
        workload=data.choice("postgres_workload", "oltp", tuning.WORKLOADS),
        disk=data.choice("postgres_disk", "ssd", tuning.DISK_TYPES),
        memory_mb=None if memory is None else data.integer("postgres_memory_mb", 0, 256, 1 << 24),
        listen_addresses=tuple(listen),
        allowed_cidrs=data.cidrs("postgres_allowed_cidrs", required=True),
        admin_cidrs=data.cidrs("postgres_admin_cidrs", required=False),
        monitoring_cidrs=data.cidrs("postgres_monitoring_cidrs", required=False),
        overrides=overrides,
        ssl_files=SslFiles(cert, key, ca) if cert and key and ca else None,
        firewall=data.flag("postgres_firewall", True),
        ssh_port=data.integer("ssh_port", 22, 1, 65535),
        app_connection_limit=data.integer("postgres_app_connection_limit", 200, 1, 100000),
        superuser_reserved_connections=data.integer(
            "postgres_superuser_reserved_connections", 3, 1, 100),
        pgaudit=pgaudit,
        pgaudit_log=pgaudit_classes(data),
        pgaudit_log_relation=data.flag("postgres_pgaudit_log_relation", False),
        pgaudit_log_parameter=data.flag("postgres_pgaudit_log_parameter", False),
    )


# Lines the seed asks for, and what an operator expects on every host; overrides win.
BASE_CONFIG: dict[str, str] = {
    "password_encryption": "scram-sha-256",
    "ssl": "on",
    "ssl_min_protocol_version": "TLSv1.2",
    "pg_stat_statements.max": "5000",
    "pg_stat_statements.track": "top",
    "track_activity_query_size": "2048",
    "track_io_timing": "on",
    "log_min_duration_statement": "1000",
    "log_connections": "on",
    "log_disconnections": "on",
    "log_lock_waits": "on",
    "log_checkpoints": "on",
    "log_temp_files": "0",
    "log_line_prefix": "%m [%p] %q%u@%d/%a from %h ",
    "idle_in_transaction_session_timeout": "10min",
}


def server_config(pg: PostgresSettings, host_memory_kb: int, cpus: int) -> dict[str, str]:
    """Tuning for the host + the base lines + overrides, checked for sense against RAM."""
    memory_kb = pg.memory_mb * 1024 if pg.memory_mb else host_memory_kb
    if pg.version is None:
        raise ValueError("server_config needs the PostgreSQL major: deploy/hostfacts.resolve")
    shape = tuning.HostShape(memory_kb=memory_kb, cpus=max(cpus, 1), disk=pg.disk,  # type: ignore[arg-type]
                             workload=pg.workload, pg_major=pg.version)  # type: ignore[arg-type]
    conf = tuning.compute(shape)
    conf.update(BASE_CONFIG)
    conf["shared_preload_libraries"] = ",".join(pg.preload_libraries)
    conf.update(pg.audit_config)
    conf["port"] = str(pg.port)
    conf["superuser_reserved_connections"] = str(pg.superuser_reserved_connections)
    conf.update(pg.overrides)
    # PGTune's own values are sane by construction; only an operator's override is checked.
    touched = set(pg.overrides)
    shared = tuning.parse_size_kb(conf["shared_buffers"])
    if "shared_buffers" in touched and shared > memory_kb * 0.8:
        raise SettingsError("postgres_overrides.shared_buffers", conf["shared_buffers"],
                            f"over 80% of the host's {tuning.format_size_kb(memory_kb)} RAM")
    work = tuning.parse_size_kb(conf["work_mem"])
    conns = int(conf["max_connections"])
    if touched & {"work_mem", "max_connections"} and work * conns > memory_kb:
        raise SettingsError("postgres_overrides.work_mem", conf["work_mem"],
                            f"work_mem x max_connections ({conns}) exceeds the host's "
                            f"{tuning.format_size_kb(memory_kb)} RAM")
    return conf


# --- backups (pgBackRest, pg_dump) and scheduled maintenance -------------------------------------

# Set by the backup settings only: an override such as archive_command = '/bin/true' would
# silently break the WAL chain that point-in-time recovery depends on.
ARCHIVE_GUCS = ("archive_mode", "archive_command", "archive_library", "archive_timeout")
_CALENDAR = re.compile(r"^[A-Za-z0-9*,.:/~ -]{1,100}$")  # systemd OnCalendar, loosely
_ABS_PATH = re.compile(r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$")


def _calendar(data: Data, key: str, default: str) -> str:
    value, src = data.raw(key, default)
    if not isinstance(value, str) or not _CALENDAR.match(value):
        raise SettingsError(key, value, "expected a systemd OnCalendar expression such as "
                            "'Sun *-*-* 01:00:00'", src)
    return value


def _abs_path(data: Data, key: str, default: str) -> str:
    value, src = data.raw(key, default)
    if not isinstance(value, str) or not _ABS_PATH.match(value) or "/../" in f"{value}/":
        raise SettingsError(key, value, "expected an absolute path without spaces or '..'", src)
    return value


@dataclass(frozen=True)
class BackupSettings:
    stanza: str
    repo_path: str  # the repository: on the primary, or on the backup host when there is one
    encrypt: bool  # aes-256-cbc, key generated into the secrets directory
    retention_days: int  # full backups kept so that any point of the last N days is restorable
    archive_async: bool
    archive_timeout: int  # seconds: at most this much committed work waits outside the archive
    compress: str
    process_max: int
    full_schedule: str  # systemd OnCalendar expressions
    diff_schedule: str
    verify_schedule: str
    dump_schedule: str
    dump_dir: str
    dump_keep_days: int
    status_dir: str
    info_schedule: str = "*:0/15"  # with a backup host: `pgbackrest info` for the exporter
    repo_host: str | None = None  # the backup host's address (inventory group `backup`), or local
    repo_host_user: str = "pgbackrest"  # its system user that owns the repository
    ssh_port: int = 22  # sshd of the backup host and the primary (pgBackRest runs over SSH)

    @property
    def status_file(self) -> str:
        """The exporter's backup_status_file (exporters/backup_status.py's format)."""
        return f"{self.status_dir}/backup.json"


def backup_settings(data: Data) -> BackupSettings:
    overrides = data.mapping("postgres_overrides")
    for name in ARCHIVE_GUCS:
        if name in overrides:
            raise SettingsError(f"postgres_overrides.{name}", overrides[name],
                                "WAL archiving is set by the backup_* keys, not an override")
    return BackupSettings(
        stanza=data.ident("backup_stanza", "bgdb"),
        repo_path=_abs_path(data, "backup_repo_path", "/var/lib/pgbackrest"),
        encrypt=data.flag("backup_repo_encrypt", True),
        retention_days=data.integer("backup_retention_days", 30, 1, 3650),
        archive_async=data.flag("backup_archive_async", True),
        archive_timeout=data.integer("backup_archive_timeout", 60, 10, 3600),
        compress=data.choice("backup_compress", "zst", ("zst", "lz4", "gz", "none")),
        process_max=data.integer("backup_process_max", 2, 1, 64),
        full_schedule=_calendar(data, "backup_full_schedule", "Sun *-*-* 01:00:00"),
        diff_schedule=_calendar(data, "backup_diff_schedule", "Mon..Sat *-*-* 01:00:00"),
        verify_schedule=_calendar(data, "backup_verify_schedule", "Sun *-*-* 06:00:00"),
        dump_schedule=_calendar(data, "backup_dump_schedule", "*-*-* 02:30:00"),
        dump_dir=_abs_path(data, "backup_dump_dir", "/var/backups/bgdb"),
        dump_keep_days=data.integer("backup_dump_keep_days", 7, 1, 3650),
        status_dir=_abs_path(data, "backup_status_dir", "/var/lib/bgdb/status"),
        info_schedule=_calendar(data, "backup_info_schedule", "*:0/15"),
        repo_host=_repo_host(data),
        repo_host_user=data.ident("backup_repo_host_user", "pgbackrest"),
        ssh_port=data.integer("ssh_port", 22, 1, 65535),
    )


def _repo_host(data: Data) -> str | None:
    """The backup host's address, set by the inventory (deploy/hostdata.py) from group `backup`."""
    value, src = data.raw("backup_repo_host", None)
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        if isinstance(value, str) and re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$", value):
            return value
        raise SettingsError("backup_repo_host", value, "expected the backup host's address or "
                            "DNS name", src) from None


def check_backup_topology(hosts: Sequence[tuple[str, Sequence[str]]]) -> None:
    """(name, groups) of every host: at most one backup host, on a host of its own (the
    repository must survive the loss of any database host), and a primary to back up."""
    backup = [n for n, g in hosts if "backup" in g]
    if len(backup) > 1:
        raise SettingsError("backup", backup, "expected at most one backup host (it holds the "
                            "one pgBackRest repository)")
    for name, groups in hosts:
        if "backup" in groups and {"postgres_primary", "postgres_replicas"} & set(groups):
            raise SettingsError(f"groups of {name}", list(groups), "a backup host holds the "
                                "repository apart from the database hosts: not also "
                                "postgres_primary or postgres_replicas")
    if backup and not any("postgres_primary" in g for _, g in hosts):
        raise SettingsError("backup", backup, "a backup host needs a host in postgres_primary "
                            "to back up")


@dataclass(frozen=True)
class MaintenanceSettings:
    daily_schedule: str
    weekly_schedule: str
    monthly_schedule: str
    retention_days: int  # time-series rows (partitions) older than this are dropped
    premake_days: int  # daily partitions created this many days ahead
    long_query_seconds: int  # running longer: logged as a WARNING system event


def maintenance_settings(data: Data) -> MaintenanceSettings:
    return MaintenanceSettings(
        daily_schedule=_calendar(data, "maintenance_daily_schedule", "*-*-* 03:30:00"),
        weekly_schedule=_calendar(data, "maintenance_weekly_schedule", "Sun *-*-* 04:00:00"),
        monthly_schedule=_calendar(data, "maintenance_monthly_schedule", "*-*-01 05:00:00"),
        retention_days=data.integer("maintenance_retention_days", 30, 1, 3650),
        premake_days=data.integer("maintenance_premake_days", 14, 1, 365),
        long_query_seconds=data.integer("maintenance_long_query_seconds", 300, 1, 86400),
    )


# --- security updates (unattended-upgrades, deploy/upgrades.py) ---------------------------------

# Debian's security archive: bookworm-security (and the older codename-only layout).
UPGRADES_DEFAULT_ORIGINS = (
    "origin=Debian,codename=${distro_codename}-security,label=Debian-Security",
    "origin=Debian,codename=${distro_codename},label=Debian-Security",
)
# Server packages whose upgrade restarts the service (Debian's maintainer scripts): upgraded by an
# operator in a maintenance window instead (README, "Security updates").
UPGRADES_DEFAULT_BLACKLIST = ("postgresql-", "pgbouncer")
_ORIGIN_KEYS = ("origin", "o", "label", "l", "codename", "n", "archive", "a", "suite",
                "component", "c", "site")
_ORIGIN_VALUE = re.compile(r"^[A-Za-z0-9${}_.:/+~ -]+$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9.+^$*\[\]_-]+$")


@dataclass(frozen=True)
class UpgradeSettings:
    enabled: bool  # False: the bundle leaves updates to the operator (its apt file removed)
    origins: tuple[str, ...]  # Unattended-Upgrade::Origins-Pattern, replacing Debian's list
    package_blacklist: tuple[str, ...]  # regular expressions matched at a package name's start


def _strings(data: Data, key: str, default: Sequence[str]) -> tuple[tuple[str, ...], str | None]:
    value, src = data.raw(key, list(default))
    if isinstance(value, str) or not isinstance(value, Sequence) or \
            not all(isinstance(v, str) for v in value):
        raise SettingsError(key, value, "expected a list of strings", src)
    return tuple(dict.fromkeys(value)), src


def upgrade_settings(data: Data) -> UpgradeSettings:
    origins, src = _strings(data, "upgrades_origins", UPGRADES_DEFAULT_ORIGINS)
    for origin in origins:
        pairs = [part.partition("=") for part in origin.split(",")]
        if not all(k in _ORIGIN_KEYS and eq and _ORIGIN_VALUE.match(v) for k, eq, v in pairs):
            raise SettingsError("upgrades_origins", origin, "expected an origin pattern like "
                                f"'{UPGRADES_DEFAULT_ORIGINS[0]}' (keys: "
                                f"{', '.join(_ORIGIN_KEYS)})", src)
    if not any("Debian-Security" in o or "-security" in o for o in origins):
        raise SettingsError("upgrades_origins", list(origins), "no security origin (label="
                            "Debian-Security): security updates would never be installed", src)
    blacklist, src = _strings(data, "upgrades_package_blacklist", UPGRADES_DEFAULT_BLACKLIST)
    for pattern in blacklist:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SettingsError("upgrades_package_blacklist", pattern,
                                f"not a regular expression ({exc})", src) from None
        if not _PACKAGE_RE.match(pattern):
            raise SettingsError("upgrades_package_blacklist", pattern,
                                "expected a package name pattern like 'postgresql-'", src)
    return UpgradeSettings(enabled=data.flag("upgrades_enabled", True), origins=origins,
                           package_blacklist=blacklist)


# --- PgBouncer -----------------------------------------------------------------------------------

POOL_MODES = ("session", "transaction", "statement")
PGBOUNCER_AUTH_USER = "pgbouncer"
# Roles that get a server pool through PgBouncer: the roles pg_hba lets in over the local socket
# to the application database (postgres.hba_roles + the monitor), and the auth_user itself.
PGBOUNCER_POOL_ROLES = ("bg_agents_user", "bg_agents_readonly", "bg_agents_monitor",
                        PGBOUNCER_AUTH_USER)
PGBOUNCER_PROCESSES = 1  # one pgbouncer per database host


@dataclass(frozen=True)
class PgBouncerSettings:
    port: int
    listen_addresses: tuple[str, ...]  # () = the host's service address + 127.0.0.1
    pool_mode: str
    default_pool_size: int
    reserve_pool_size: int
    reserve_pool_timeout: int  # seconds a client waits before the reserve pool is used
    max_client_conn: int
    query_wait_timeout: int
    server_reset_query: str
    server_idle_timeout: int
    server_lifetime: int
    client_idle_timeout: int
    idle_transaction_timeout: int
    admin_users: tuple[str, ...]
    stats_users: tuple[str, ...]
    databases: tuple[str, ...]  # [databases] entries, each routed to the local server
    pool_users: tuple[str, ...]
    max_connections: int  # the server's, which the pools must fit in
    auth_user: str = PGBOUNCER_AUTH_USER
    processes: int = PGBOUNCER_PROCESSES

    @property
    def server_connections(self) -> int:
        """The most server connections all pools together can open."""
        return ((self.default_pool_size + self.reserve_pool_size) * len(self.databases)
                * len(self.pool_users) * self.processes)

    @property
    def console_users(self) -> tuple[str, ...]:
        """Roles allowed on the admin console: PgBouncer 1.18 checks them against auth_file."""
        return tuple(dict.fromkeys((*self.admin_users, *self.stats_users)))

    @property
    def nofile(self) -> int:
        """File descriptors: every client, every server connection, and headroom."""
        return max(4096, 2 * (self.max_client_conn + self.server_connections) + 256)


def planned_max_connections(pg: PostgresSettings) -> int:
    """max_connections as the deploy will set it: an override, else the workload's PGTune
    default (which does not depend on RAM, so it is known before any host is contacted)."""
    if "max_connections" in pg.overrides:
        value = pg.overrides["max_connections"]
        if not value.isdigit() or int(value) < 1:
            raise SettingsError("postgres_overrides.max_connections", value,
                                "expected a positive integer")
        return int(value)
    shape = tuning.HostShape(memory_kb=1 << 20, cpus=1, disk=pg.disk,  # type: ignore[arg-type]
                             workload=pg.workload, pg_major=pg.version or 13)  # type: ignore[arg-type]
    return int(tuning.compute(shape)["max_connections"])


def pgbouncer_port(data: Data) -> int:
    return data.integer("pgbouncer_port", 6432, 1, 65535)


def _role_list(data: Data, key: str, default: Sequence[str]) -> tuple[str, ...]:
    value, src = data.raw(key, list(default))
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SettingsError(key, value, "expected a list of role names", src)
    for item in value:
        if not isinstance(item, str) or not _IDENT.match(item):
            raise SettingsError(key, item, "expected a lowercase SQL identifier", src)
    return tuple(dict.fromkeys(value))


def pgbouncer_settings(data: Data, app: AppSettings, pg: PostgresSettings,
                       max_connections: int | None = None) -> PgBouncerSettings:
    """PgBouncer's settings, and the sizing guard: all pools together (plus the superuser
    reserve) must fit in the server's max_connections, or clients queue on a full server."""
    port = pgbouncer_port(data)
    if port == pg.port:
        raise SettingsError("pgbouncer_port", port, f"must differ from postgres_port {pg.port}")
    listen, _ = data.raw("pgbouncer_listen_addresses", [])
    if isinstance(listen, str) or not isinstance(listen, Sequence):
        raise SettingsError("pgbouncer_listen_addresses", listen, "expected a list of addresses")
    for addr in listen:
        try:
            ip = ipaddress.ip_address(str(addr))
        except ValueError:
            raise SettingsError("pgbouncer_listen_addresses", addr,
                                "expected IP addresses; '*' exposes every interface") from None
        if ip.is_unspecified:
            raise SettingsError("pgbouncer_listen_addresses", addr,
                                "exposes every interface: list the service addresses")
    pool_value, _ = data.raw("pgbouncer_default_pool_size")
    if pool_value is None:  # the seed's POSTGRESQL_POOL_SIZE
        pool, pool_src = app.pool_size, data.raw("app_pool_size", None, "POSTGRESQL_POOL_SIZE")[1]
    else:
        pool, pool_src = data.integer("pgbouncer_default_pool_size", 10, 1, 10000), None
    wait_value, _ = data.raw("pgbouncer_query_wait_timeout")
    wait = app.timeout if wait_value is None else data.integer(
        "pgbouncer_query_wait_timeout", 30, 0, 86400)
    reset, _ = data.raw("pgbouncer_server_reset_query", "DISCARD ALL")
    if not isinstance(reset, str) or any(c in reset for c in "\n\r;"):
        raise SettingsError("pgbouncer_server_reset_query", reset, "expected one SQL statement")
    bouncer = PgBouncerSettings(
        port=port,
        listen_addresses=tuple(str(a) for a in listen),
        pool_mode=data.choice("pgbouncer_pool_mode", "transaction", POOL_MODES),
        default_pool_size=pool,
        reserve_pool_size=data.integer("pgbouncer_reserve_pool_size", 5, 0, 10000),
        reserve_pool_timeout=data.integer("pgbouncer_reserve_pool_timeout", 3, 0, 3600),
        max_client_conn=data.integer("pgbouncer_max_client_conn", 1000, 1, 100000),
        query_wait_timeout=wait,
        server_reset_query=reset,
        server_idle_timeout=data.integer("pgbouncer_server_idle_timeout", 600, 0, 86400),
        server_lifetime=data.integer("pgbouncer_server_lifetime", 3600, 0, 604800),
        client_idle_timeout=data.integer("pgbouncer_client_idle_timeout", 0, 0, 604800),
        idle_transaction_timeout=data.integer("pgbouncer_idle_transaction_timeout", 600, 0,
                                              86400),
        admin_users=_role_list(data, "pgbouncer_admin_users", ()),
        stats_users=_role_list(data, "pgbouncer_stats_users", ("bg_agents_monitor",)),
        databases=(app.database,),
        pool_users=tuple(dict.fromkeys((app.user, *PGBOUNCER_POOL_ROLES))),
        max_connections=planned_max_connections(pg) if max_connections is None
        else max_connections,
    )
    if PGBOUNCER_AUTH_USER in bouncer.console_users:
        raise SettingsError("pgbouncer_stats_users", PGBOUNCER_AUTH_USER,
                            "the auth_user only looks passwords up; use another role")
    needed = bouncer.server_connections + pg.superuser_reserved_connections
    if needed > bouncer.max_connections:
        raise SettingsError(
            "pgbouncer_default_pool_size", pool,
            f"({pool} pool + {bouncer.reserve_pool_size} reserve) x {len(bouncer.databases)} "
            f"database(s) x {len(bouncer.pool_users)} roles x {bouncer.processes} process(es) "
            f"+ {pg.superuser_reserved_connections} superuser_reserved_connections = {needed} "
            f"server connections exceed max_connections {bouncer.max_connections}", pool_src)
    return bouncer


# --- the bgdb exporter (exporters/, installed by deploy/exporter.py) -----------------------------

EXPORTER_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Ports the exporter must not take: postgres_exporter's well-known port (and the database's,
# PgBouncer's and SSH's, checked against the settings).
POSTGRES_EXPORTER_PORT = 9187
_HTTP_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class ExporterSettings:
    enabled: bool
    port: int
    listen_address: str | None  # None = the host's service address
    heartbeat_interval_seconds: int  # the agents' expected interval: missed beats count from it
    max_agents: int  # per-agent series for at most this many (most overdue first)
    statement_timeout_seconds: int  # per query; a hung database gives bgdb_up 0 within it + 1 s
    scrape_timeout_seconds: int  # no query starts after this much of a scrape has passed
    long_query_seconds: int
    top_tables: int
    max_label_values: int
    pgbouncer: bool  # also scrape PgBouncer's admin console (SHOW POOLS/STATS/DATABASES)
    backup_status: bool  # read the backup jobs' status file (backup freshness metrics)
    tls: bool  # https with the host's certificate from the bundle's CA
    basic_auth_user: str | None  # password generated into .secrets/passwords/bgdb-exporter-scrape
    log_level: str


def _pgbouncer_deployed() -> bool:
    """PgBouncer is scraped by default where the bundle deploys it (deploy/pgbouncer.py)."""
    from importlib.util import find_spec

    return find_spec("deploy.pgbouncer") is not None


def exporter_settings(data: Data, pg: PostgresSettings) -> ExporterSettings:
    port = data.integer("exporter_port", 9847, 1, 65535)
    taken = {POSTGRES_EXPORTER_PORT: "postgres_exporter's port", pg.port: "postgres_port",
             pgbouncer_port(data): "pgbouncer_port", pg.ssh_port: "ssh_port"}
    if port in taken:
        raise SettingsError("exporter_port", port, f"is {taken[port]}: choose another port")
    listen, src = data.raw("exporter_listen_address", None)
    if listen is not None:
        try:
            ip = ipaddress.ip_address(str(listen))
        except ValueError:
            raise SettingsError("exporter_listen_address", listen,
                                "expected an IP address, or None for the service address",
                                src) from None
        if ip.is_unspecified:
            raise SettingsError("exporter_listen_address", listen,
                                "exposes every interface: give the service address")
    user, _ = data.raw("exporter_basic_auth_user", None)
    if user is not None and (not isinstance(user, str) or not _HTTP_USER.match(user)):
        raise SettingsError("exporter_basic_auth_user", user,
                            "expected 1-64 letters, digits, '.', '_' or '-', or None")
    statement = data.integer("exporter_statement_timeout_seconds", 2, 1, 60)
    scrape = data.integer("exporter_scrape_timeout_seconds", 5, 1, 300)
    if scrape < statement:
        raise SettingsError("exporter_scrape_timeout_seconds", scrape,
                            f"must be >= exporter_statement_timeout_seconds ({statement})")
    bouncer, _ = data.raw("exporter_pgbouncer", None)
    return ExporterSettings(
        enabled=data.flag("exporter_enabled", True),
        port=port,
        listen_address=None if listen is None else str(listen),
        heartbeat_interval_seconds=data.integer("exporter_heartbeat_interval_seconds", 60, 1,
                                                86400),
        max_agents=data.integer("exporter_max_agents", 200, 1, 100000),
        statement_timeout_seconds=statement,
        scrape_timeout_seconds=scrape,
        long_query_seconds=data.integer("exporter_long_query_seconds", 300, 1, 86400),
        top_tables=data.integer("exporter_top_tables", 20, 1, 1000),
        max_label_values=data.integer("exporter_max_label_values", 50, 1, 1000),
        pgbouncer=_pgbouncer_deployed() if bouncer is None else data.flag("exporter_pgbouncer",
                                                                          True),
        backup_status=data.flag("exporter_backup_status", True),
        tls=data.flag("exporter_tls", False),
        basic_auth_user=user,
        log_level=data.choice("exporter_log_level", "INFO", EXPORTER_LOG_LEVELS),
    )


# --- read replicas (streaming replication) -------------------------------------------------------

REPLICATION_USER = "bgdb_replicator"
SLOT_PREFIX = "bgdb_"  # slots the deploy manages (and may drop); others are left alone


def replication_slot_name(host_name: str) -> str:
    """A replica's physical slot on the primary, also its application_name: `bgdb_` + its
    inventory name with anything but [a-z0-9_] as '_' (slot names allow no more, 63 bytes)."""
    return (SLOT_PREFIX + re.sub(r"[^a-z0-9_]", "_", host_name.lower()))[:63]


@dataclass(frozen=True)
class ReplicaSettings:
    drop_orphan_slots: bool  # primary: drop bgdb_ slots of replicas no longer in the inventory
    reclone: bool  # replica: replace a data directory that is not a streaming standby
    hot_standby_feedback: bool  # dashboards' queries are not cancelled by the primary's vacuum
    max_lag_seconds: int  # readiness threshold (replay lag)
    max_lag_bytes: int  # readiness threshold (WAL received, not replayed)
    replicator_connection_limit: int


def replica_settings(data: Data) -> ReplicaSettings:
    return ReplicaSettings(
        drop_orphan_slots=data.flag("postgres_drop_orphan_slots", False),
        reclone=data.flag("postgres_replica_reclone", False),
        hot_standby_feedback=data.flag("postgres_replica_hot_standby_feedback", True),
        max_lag_seconds=data.integer("postgres_replica_max_lag_seconds", 30, 1, 86400),
        max_lag_bytes=data.integer("postgres_replica_max_lag_bytes", 64 << 20, 1 << 16,
                                   1 << 40),
        replicator_connection_limit=data.integer("postgres_replicator_connection_limit", 10,
                                                 1, 1000),
    )


def check_replication_topology(hosts: Sequence[tuple[str, Sequence[str]]]) -> None:
    """(name, groups) of every host: one primary when there are replicas, no host in both
    groups, and one slot name per replica."""
    primaries = [n for n, g in hosts if "postgres_primary" in g]
    replicas = [n for n, g in hosts if "postgres_replicas" in g]
    both = sorted(set(primaries) & set(replicas))
    if both:
        raise SettingsError("groups", both[0], "a host is either postgres_primary or "
                            "postgres_replicas, not both")
    if len(primaries) > 1:
        raise SettingsError("postgres_primary", primaries, "expected exactly one primary host")
    if replicas and not primaries:
        raise SettingsError("postgres_replicas", replicas, "replicas need a host in "
                            "postgres_primary to copy and stream from")
    slots: dict[str, str] = {}
    for name in replicas:
        slot = replication_slot_name(name)
        if slot in slots:
            raise SettingsError("postgres_replicas", name, f"its slot name {slot} is the same "
                                f"as {slots[slot]}'s: rename one of the hosts")
        slots[slot] = name


# --- readiness evidence: the load test and the restore drill (checks/evidence.py) ------------

@dataclass(frozen=True)
class ReadinessSettings:
    load_evidence: str  # bench/load_agents.py's evidence file on the checks' machine
    load_evidence_max_age_days: int
    load_min_ops_per_second: int  # seed KPIs: >= 1,000 operations/s,
    load_max_p95_ms: int  # p95 under 100 ms,
    load_max_error_percent: int  # error rate under 5 % (alert BgdbOperationErrorRateHigh)
    restore_drill_max_age_days: int  # a successful bgdb.restore of the primary's backups


def readiness_settings(data: Data) -> ReadinessSettings:
    evidence, src = data.raw("readiness_load_evidence", "reports/load_evidence.json")
    if not isinstance(evidence, str) or not evidence.strip() or "\n" in evidence:
        raise SettingsError("readiness_load_evidence", evidence,
                            "expected a file path (relative to the repository, or absolute)",
                            src)
    return ReadinessSettings(
        load_evidence=evidence,
        load_evidence_max_age_days=data.integer("readiness_load_evidence_max_age_days", 7, 1,
                                                365),
        load_min_ops_per_second=data.integer("readiness_load_min_ops_per_second", 1000, 1,
                                             10_000_000),
        load_max_p95_ms=data.integer("readiness_load_max_p95_ms", 100, 1, 600_000),
        load_max_error_percent=data.integer("readiness_load_max_error_percent", 5, 0, 100),
        restore_drill_max_age_days=data.integer("readiness_restore_drill_max_age_days", 30, 1,
                                                3650),
    )
