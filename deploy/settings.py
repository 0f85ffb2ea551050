"""Host data + POSTGRESQL_* environment -> one frozen, validated settings object per concern.

Each key's type, default and bounds are declared once in deploy/settings_schema.py; this module
holds what a key alone cannot say: the rules across keys (pool sizes vs max_connections, memory vs
RAM, overrides vs what the bundle owns). A bad value raises SettingsError naming the key, the
value, where it came from and what is allowed. Templates and checks read these objects only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy import overrides as guc
from deploy import tuning
from deploy.settings_schema import PGAUDIT_CLASSES, UPGRADES_DEFAULT_ORIGINS
from deploy.settings_schema import Data as Data  # re-exported: callers import it from here
from deploy.settings_schema import SettingsError as SettingsError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# GUCs whose value is a memory size, checked for sense against the host's RAM.
_MEMORY_GUCS = ("shared_buffers", "work_mem", "maintenance_work_mem", "effective_cache_size")


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
    max_agents: int = 1000  # the fleet: each agent opens up to pool_size connections

    @property
    def password_env(self) -> str:
        return "POSTGRESQL_PASSWORD"


def app_settings(data: Data) -> AppSettings:
    return AppSettings(
        database=data.get("app_database"),
        user=data.get("app_user"),
        port=data.get("app_port"),
        ssl_mode=data.get("app_ssl_mode"),
        pool_size=data.get("app_pool_size"),
        timeout=data.get("app_timeout"),
        host=data.get("app_host"),
        max_agents=data.get("app_max_agents"),
    )


# --- PostgreSQL server ---------------------------------------------------------------------------

# What the readiness check proves is logged: schema and privilege changes (CIS 3.2).
PGAUDIT_REQUIRED = frozenset(("ddl", "role"))
# The majors whose Debian release packages set_user (postgresql-N-set-user): 15 (Debian 12,
# 4.0.1) and 17 (Debian 13, 4.1.0). Debian 11 has no postgresql-13-set-user (apt-cache policy
# on bullseye, bullseye-updates and -security knows no such package).
SET_USER_MAJORS = frozenset((15, 17))
SET_USER_MISSING = "Debian 11 (bullseye) packages no set_user for PostgreSQL 13"


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
    pgaudit_log: tuple[str, ...] = tuple(sorted(PGAUDIT_REQUIRED))
    pgaudit_log_relation: bool = False  # one line per relation of SELECT/DML: volume
    pgaudit_log_parameter: bool = False  # bind parameters: secrets and personal data in logs
    superuser_connection_limit: int = 10  # CIS 5.5 (superusers are exempt: intent only)
    password_check: bool = True  # passwordcheck preloaded (CIS 5.6)
    auth_delay_ms: int = 500  # auth_delay preloaded when > 0 (CIS 5.7)
    set_user: bool = True  # set_user preloaded and created where packaged (CIS 4.8)
    log_min_duration_ms: int = 1000  # the seed's slow-statement threshold (pgBadger reads it)
    ha: bool = False  # Patroni runs the server (deploy/ha.py): its unit, not the cluster's

    @property
    def data_dir(self) -> str:
        return f"/var/lib/postgresql/{self.version}/{self.cluster}"

    @property
    def conf_dir(self) -> str:
        return f"/etc/postgresql/{self.version}/{self.cluster}"

    @property
    def unit(self) -> str:
        # Debian's patroni@.service reads /etc/patroni/<version>-<cluster>.yml
        kind = "patroni" if self.ha else "postgresql"
        return f"{kind}@{self.version}-{self.cluster}"

    @property
    def preload_libraries(self) -> tuple[str, ...]:
        """shared_preload_libraries the bundle needs (roles.py creates their extensions)."""
        return ("pg_stat_statements", *(("pgaudit",) if self.pgaudit else ()),
                *(("passwordcheck",) if self.password_check else ()),
                *(("auth_delay",) if self.auth_delay_ms else ()),
                *(("set_user",) if self.set_user_installed else ()))

    @property
    def set_user_installed(self) -> bool:
        """set_user wanted and packaged by the distribution for this major (CIS 4.8)."""
        return self.set_user and self.version in SET_USER_MAJORS

    @property
    def auth_config(self) -> dict[str, str]:
        """auth_delay's line when it is loaded (CIS 5.7)."""
        return {"auth_delay.milliseconds": str(self.auth_delay_ms)} if self.auth_delay_ms else {}

    @property
    def audit_config(self) -> dict[str, str]:
        """pgaudit's lines for the drop-in; none when auditing is off."""
        if not self.pgaudit:
            return {}
        return {"pgaudit.log": ", ".join(self.pgaudit_log),
                "pgaudit.log_relation": "on" if self.pgaudit_log_relation else "off",
                "pgaudit.log_parameter": "on" if self.pgaudit_log_parameter else "off"}


def _cidrs(data: Data, key: str) -> tuple[IPNetwork, ...]:
    """The key's CIDRs; the whole Internet, or a range wider than the bound, only with the loud
    postgres_allow_public_access (which `bgdb check` then flags)."""
    nets: tuple[IPNetwork, ...] = data.get(key)
    bounds = {v: data.get(f"postgres_cidr_min_prefix_v{v}") for v in (4, 6)}
    if data.get("postgres_allow_public_access"):
        return nets
    for net in nets:
        bound = bounds[net.version]
        if net.prefixlen < bound:
            raise SettingsError(key, str(net), f"wider than /{bound}: opens the database to "
                                f"{net.num_addresses:,} addresses; narrow it, or set "
                                "postgres_allow_public_access = True", data.raw(key)[1])
    return nets


def pgaudit_included(classes: Sequence[str]) -> set[str]:
    """The classes a pgaudit.log list logs: 'all' expands, '-class' subtracts."""
    names = [c.strip().lower() for c in classes]
    included = set(PGAUDIT_CLASSES[:-1]) if "all" in names else set(names)
    return included - {c[1:] for c in names if c.startswith("-")}


def pgaudit_classes(data: Data) -> tuple[str, ...]:
    """pgaudit.log as a list (or 'ddl, role'): pgaudit's classes only, covering ddl and role."""
    classes: tuple[str, ...] = data.get("postgres_pgaudit_log")
    if not pgaudit_included(classes) >= PGAUDIT_REQUIRED:
        value, src = data.raw("postgres_pgaudit_log")
        raise SettingsError("postgres_pgaudit_log", value, "must log at least ddl and role "
                            "(CIS 3.2); set postgres_pgaudit = False to turn audit logging off",
                            src)
    return classes


def postgres_settings(data: Data) -> PostgresSettings:
    overrides = data.get("postgres_overrides")
    pgaudit = data.get("postgres_pgaudit")
    version = data.get("postgres_version")
    # Unset: the distribution's major, known from the host's facts at deploy time; the
    # overrides must then suit every major a Debian release ships.
    guc.check(overrides, [version] if version else guc.SHIPPED_MAJORS, pgaudit=pgaudit,
              source=data.raw("postgres_overrides")[1])
    for name in _MEMORY_GUCS:
        if name in overrides:
            try:
                tuning.parse_size_kb(overrides[name])
            except ValueError as exc:
                gkey = f"postgres_overrides.{name}"
                raise SettingsError(gkey, overrides[name], str(exc)) from None
    cert, key, ca = (data.get(f"postgres_ssl_{k}_file") for k in ("cert", "key", "ca"))
    given = [p for p in (cert, key, ca) if p is not None]
    if given and len(given) != 3:
        raise SettingsError("postgres_ssl_cert_file", str(cert),
                            "set all of postgres_ssl_cert_file, _key_file and _ca_file, or none")
    return PostgresSettings(
        version=version,
        port=data.get("postgres_port"),
        cluster=data.get("postgres_cluster"),
        locale=data.get("postgres_locale"),
        workload=data.get("postgres_workload"),
        disk=data.get("postgres_disk"),
        memory_mb=data.get("postgres_memory_mb"),
        listen_addresses=data.get("postgres_listen_addresses"),
        allowed_cidrs=_cidrs(data, "postgres_allowed_cidrs"),
        admin_cidrs=_cidrs(data, "postgres_admin_cidrs"),
        monitoring_cidrs=_cidrs(data, "postgres_monitoring_cidrs"),
        overrides=overrides,
        ssl_files=SslFiles(cert, key, ca) if cert and key and ca else None,
        firewall=data.get("postgres_firewall"),
        ssh_port=data.get("ssh_port"),
        app_connection_limit=data.get("postgres_app_connection_limit"),
        superuser_reserved_connections=data.get("postgres_superuser_reserved_connections"),
        pgaudit=pgaudit,
        pgaudit_log=pgaudit_classes(data),
        pgaudit_log_relation=data.get("postgres_pgaudit_log_relation"),
        pgaudit_log_parameter=data.get("postgres_pgaudit_log_parameter"),
        superuser_connection_limit=data.get("postgres_superuser_connection_limit"),
        password_check=data.get("postgres_password_check"),
        auth_delay_ms=data.get("postgres_auth_delay_ms"),
        set_user=data.get("postgres_set_user"),
        log_min_duration_ms=data.get("postgres_log_min_duration_ms"),
        ha=data.get("postgres_ha"),
    )


# Lines the seed asks for, and what an operator expects on every host; overrides win.
BASE_CONFIG: dict[str, str] = {
    "password_encryption": "scram-sha-256",
    "ssl": "on",
    # CIS 6.8: TLS 1.3 only by default (every libpq on Debian 11+ speaks it; TLSv1.2 is an
    # override away), and for TLS 1.2 only forward-secret AEAD suites (1.3's all are).
    "ssl_min_protocol_version": "TLSv1.3",
    "ssl_ciphers": "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL",
    "ssl_prefer_server_ciphers": "on",
    # CIS 2.6: the socket is the postgres user's and its group's (bgdb-pgsocket: PgBouncer
    # runs as postgres, the exporter is a member; local apps join it or use PgBouncer's).
    "unix_socket_permissions": "0770",
    "unix_socket_group": "bgdb-pgsocket",
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
    # pgBadger's documented form (deploy/pgbadger.py passes the same to --prefix).
    "log_line_prefix": "%m [%p]: user=%u,db=%d,app=%a,client=%h ",
    # CIS 3.1.x: the logging collector writes the log itself, 0600 in the cluster's log/
    # directory, one file per weekday overwritten a week later (7 days kept, no cron needed).
    "logging_collector": "on",
    "log_destination": "stderr",
    "log_directory": "log",
    "log_filename": "postgresql-%a.log",
    "log_file_mode": "0600",
    "log_rotation_age": "1d",
    "log_rotation_size": "1GB",
    "log_truncate_on_rotation": "on",
    # CIS 3.1.22: verbose adds the SQLSTATE and source location (a LOCATION line per message,
    # ~1/3 more log volume); 7.2: replication commands (slots, base backups) logged.
    "log_error_verbosity": "verbose",
    "log_replication_commands": "on",
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
    conf.update(pg.auth_config)
    conf["port"] = str(pg.port)
    conf["log_min_duration_statement"] = str(pg.log_min_duration_ms)
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
    overrides = data.get("postgres_overrides")
    for name in guc.ARCHIVE_GUCS:  # also on a backup host, which reads no other server setting
        if name in overrides:
            raise SettingsError(f"postgres_overrides.{name}", overrides[name], guc.OWNED[name],
                                data.raw("postgres_overrides")[1])
    return BackupSettings(
        stanza=data.get("backup_stanza"),
        repo_path=data.get("backup_repo_path"),
        encrypt=data.get("backup_repo_encrypt"),
        retention_days=data.get("backup_retention_days"),
        archive_async=data.get("backup_archive_async"),
        archive_timeout=data.get("backup_archive_timeout"),
        compress=data.get("backup_compress"),
        process_max=data.get("backup_process_max"),
        full_schedule=data.get("backup_full_schedule"),
        diff_schedule=data.get("backup_diff_schedule"),
        verify_schedule=data.get("backup_verify_schedule"),
        dump_schedule=data.get("backup_dump_schedule"),
        dump_dir=data.get("backup_dump_dir"),
        dump_keep_days=data.get("backup_dump_keep_days"),
        status_dir=data.get("backup_status_dir"),
        info_schedule=data.get("backup_info_schedule"),
        repo_host=data.get("backup_repo_host"),
        repo_host_user=data.get("backup_repo_host_user"),
        ssh_port=data.get("ssh_port"),
    )


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
        daily_schedule=data.get("maintenance_daily_schedule"),
        weekly_schedule=data.get("maintenance_weekly_schedule"),
        monthly_schedule=data.get("maintenance_monthly_schedule"),
        retention_days=data.get("maintenance_retention_days"),
        premake_days=data.get("maintenance_premake_days"),
        long_query_seconds=data.get("maintenance_long_query_seconds"),
    )


# --- security updates (unattended-upgrades, deploy/upgrades.py) ---------------------------------

# Debian's security archive: bookworm-security (and the older codename-only layout).
# Server packages whose upgrade restarts the service (Debian's maintainer scripts): upgraded by an
# operator in a maintenance window instead (README, "Security updates").
_ORIGIN_KEYS = ("origin", "o", "label", "l", "codename", "n", "archive", "a", "suite",
                "component", "c", "site")
_ORIGIN_VALUE = re.compile(r"^[A-Za-z0-9${}_.:/+~ -]+$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9.+^$*\[\]_-]+$")


@dataclass(frozen=True)
class UpgradeSettings:
    enabled: bool  # False: the bundle leaves updates to the operator (its apt file removed)
    origins: tuple[str, ...]  # Unattended-Upgrade::Origins-Pattern, replacing Debian's list
    package_blacklist: tuple[str, ...]  # regular expressions matched at a package name's start


def upgrade_settings(data: Data) -> UpgradeSettings:
    origins, src = data.get("upgrades_origins"), data.raw("upgrades_origins")[1]
    for origin in origins:
        pairs = [part.partition("=") for part in origin.split(",")]
        if not all(k in _ORIGIN_KEYS and eq and _ORIGIN_VALUE.match(v) for k, eq, v in pairs):
            raise SettingsError("upgrades_origins", origin, "expected an origin pattern like "
                                f"'{UPGRADES_DEFAULT_ORIGINS[0]}' (keys: "
                                f"{', '.join(_ORIGIN_KEYS)})", src)
    if not any("Debian-Security" in o or "-security" in o for o in origins):
        raise SettingsError("upgrades_origins", list(origins), "no security origin (label="
                            "Debian-Security): security updates would never be installed", src)
    blacklist = data.get("upgrades_package_blacklist")
    src = data.raw("upgrades_package_blacklist")[1]
    for pattern in blacklist:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SettingsError("upgrades_package_blacklist", pattern,
                                f"not a regular expression ({exc})", src) from None
        if not _PACKAGE_RE.match(pattern):
            raise SettingsError("upgrades_package_blacklist", pattern,
                                "expected a package name pattern like 'postgresql-'", src)
    return UpgradeSettings(enabled=data.get("upgrades_enabled"), origins=origins,
                           package_blacklist=blacklist)


# --- PgBouncer -----------------------------------------------------------------------------------

PGBOUNCER_AUTH_USER = "pgbouncer"
# Roles that get a server pool through PgBouncer: the roles pg_hba lets in over the local socket
# to the application database (postgres.hba_roles + the monitor and ops roles), and the
# auth_user itself.
PGBOUNCER_POOL_ROLES = ("bg_agents_user", "bg_agents_readonly", "bg_agents_monitor",
                        "bg_agents_ops", PGBOUNCER_AUTH_USER)
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
    max_db_connections: int  # all roles' pools of one database together (PgBouncer queues)
    max_prepared_statements: int = 0  # rendered only where PgBouncer is 1.21+ (deploy's facts)
    auth_user: str = PGBOUNCER_AUTH_USER
    processes: int = PGBOUNCER_PROCESSES

    @property
    def server_connections(self) -> int:
        """The most server connections all pools together can open: max_db_connections caps
        each database's pools, whatever each role's pool may take."""
        per_database = min(self.max_db_connections,
                           (self.default_pool_size + self.reserve_pool_size) * len(self.pool_users))
        return per_database * len(self.databases) * self.processes

    @property
    def server_connections_per_role(self) -> int:
        """Server connections PgBouncer may open as one pooled role (pass-through login):
        PostgreSQL counts them against that role's CONNECTION LIMIT."""
        return (self.default_pool_size + self.reserve_pool_size) * len(self.databases) \
            * self.processes

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
    return data.get("pgbouncer_port")


# Client connections beyond the fleet's: operators, the exporter, readiness checks, load tests.
CLIENT_CONN_HEADROOM = 100


def fleet_client_conn(data: Data, app: AppSettings) -> int:
    """max_client_conn: set, or every agent's whole pool (the seed's fleet) plus headroom."""
    value = data.get("pgbouncer_max_client_conn")
    return app.max_agents * app.pool_size + CLIENT_CONN_HEADROOM if value is None else value


def write_pool_size(app_pool_size: int, max_db_connections: int, reserve: int) -> int:
    """PgBouncer's server connections per role by default: half of what all pools of the
    database may hold together (max_db_connections), never less than the seed's
    POSTGRESQL_POOL_SIZE. The application role is the one that fills its pool (the agents'
    writes); the readonly, monitoring, ops and auth roles share the other half. Each transaction
    with synchronous_commit waits for its WAL flush and more concurrent server connections share
    each flush (group commit), so the pooled write path keeps up with direct clients
    (bench/write_path.py at 64 clients: pool 10 gave 0.64x the direct path's TPS, pool 25
    0.84-0.89x)."""
    return max(app_pool_size, max_db_connections // 2 - reserve)


def app_role_connection_limit(pg: PostgresSettings, bouncer: PgBouncerSettings) -> int:
    """The app role's CONNECTION LIMIT: its direct clients' share (postgres_app_connection_limit)
    plus the server connections PgBouncer logs in with as that role, which PostgreSQL counts
    against the same limit - so a busy pool never refuses direct clients below their share."""
    return pg.app_connection_limit + bouncer.server_connections_per_role


def pgbouncer_settings(data: Data, app: AppSettings, pg: PostgresSettings,
                       max_connections: int | None = None) -> PgBouncerSettings:
    """PgBouncer's settings, and the sizing guard: all pools together (plus the superuser
    reserve) must fit in the server's max_connections, or clients queue on a full server."""
    port = pgbouncer_port(data)
    if port == pg.port:
        raise SettingsError("pgbouncer_port", port, f"must differ from postgres_port {pg.port}")
    pool = data.get("pgbouncer_default_pool_size")
    pool_src = data.raw("pgbouncer_default_pool_size")[1]
    max_conn = planned_max_connections(pg) if max_connections is None else max_connections
    pool_users = tuple(dict.fromkeys((app.user, *PGBOUNCER_POOL_ROLES)))
    reserve = data.get("pgbouncer_reserve_pool_size")
    max_db = data.get("pgbouncer_max_db_connections")
    max_db_src = data.raw("pgbouncer_max_db_connections")[1]
    if max_db is None:  # half of the server for the pools, the rest for direct clients
        max_db, max_db_src = max(1, max_conn // 2), "half of max_connections"
    if pool is None:  # at least the seed's POSTGRESQL_POOL_SIZE, more where the server has room
        pool, pool_src = write_pool_size(app.pool_size, max_db, reserve), \
            data.raw("app_pool_size")[1]
    wait = data.get("pgbouncer_query_wait_timeout")
    bouncer = PgBouncerSettings(
        port=port,
        listen_addresses=data.get("pgbouncer_listen_addresses"),
        pool_mode=data.get("pgbouncer_pool_mode"),
        default_pool_size=pool,
        reserve_pool_size=reserve,
        reserve_pool_timeout=data.get("pgbouncer_reserve_pool_timeout"),
        max_client_conn=fleet_client_conn(data, app),
        max_prepared_statements=data.get("pgbouncer_max_prepared_statements"),
        query_wait_timeout=app.timeout if wait is None else wait,
        server_reset_query=data.get("pgbouncer_server_reset_query"),
        server_idle_timeout=data.get("pgbouncer_server_idle_timeout"),
        server_lifetime=data.get("pgbouncer_server_lifetime"),
        client_idle_timeout=data.get("pgbouncer_client_idle_timeout"),
        idle_transaction_timeout=data.get("pgbouncer_idle_transaction_timeout"),
        admin_users=data.get("pgbouncer_admin_users"),
        stats_users=data.get("pgbouncer_stats_users"),
        databases=(app.database,),
        pool_users=pool_users,
        max_connections=max_conn,
        max_db_connections=max_db,
    )
    if PGBOUNCER_AUTH_USER in bouncer.console_users:
        raise SettingsError("pgbouncer_stats_users", PGBOUNCER_AUTH_USER,
                            "the auth_user only looks passwords up; use another role")
    if pool + reserve > max_db:
        raise SettingsError(
            "pgbouncer_default_pool_size", pool,
            f"{pool} pool + {reserve} reserve exceed pgbouncer_max_db_connections {max_db} "
            f"(max_connections {max_conn}): the pool could never fill", pool_src)
    needed = bouncer.server_connections + pg.superuser_reserved_connections
    if needed > bouncer.max_connections:
        raise SettingsError(
            "pgbouncer_max_db_connections", max_db,
            f"{bouncer.server_connections // len(bouncer.databases) // bouncer.processes} "
            f"server connections x {len(bouncer.databases)} database(s) x {bouncer.processes} "
            f"process(es) + {pg.superuser_reserved_connections} superuser_reserved_connections "
            f"= {needed} exceed max_connections {bouncer.max_connections}", max_db_src)
    return bouncer


# --- the bgdb exporter (exporters/, installed by deploy/exporter.py) -----------------------------

# Ports the exporter must not take: postgres_exporter's well-known port (and the database's,
# PgBouncer's and SSH's, checked against the settings).
POSTGRES_EXPORTER_PORT = 9187


@dataclass(frozen=True)
class ExporterSettings:
    enabled: bool
    port: int
    listen_address: str | None  # None = the host's service address
    heartbeat_interval_seconds: int  # the agents' expected interval: missed beats count from it
    max_agents: int  # per-agent series for at most this many (most overdue first)
    agent_heartbeat_cache_seconds: int | None  # None: the exporter's default (0.4 x interval)
    statement_timeout_seconds: int  # per query; a hung database gives bgdb_up 0 within it + 2 s
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
    port = data.get("exporter_port")
    taken = {POSTGRES_EXPORTER_PORT: "postgres_exporter's port", pg.port: "postgres_port",
             pgbouncer_port(data): "pgbouncer_port", pg.ssh_port: "ssh_port"}
    if port in taken:
        raise SettingsError("exporter_port", port, f"is {taken[port]}: choose another port")
    statement = data.get("exporter_statement_timeout_seconds")
    scrape = data.get("exporter_scrape_timeout_seconds")
    if scrape < statement:
        raise SettingsError("exporter_scrape_timeout_seconds", scrape,
                            f"must be >= exporter_statement_timeout_seconds ({statement})")
    interval = data.get("exporter_heartbeat_interval_seconds")
    cache = data.get("exporter_agent_heartbeat_cache_seconds")
    if cache is not None and cache * 2 >= interval:
        # Below half an interval, a healthy agent's age computed from the cache stays under 1.5
        # intervals: no false missed-heartbeat alert (exporters/heartbeat.py).
        raise SettingsError("exporter_agent_heartbeat_cache_seconds", cache,
                            f"must be below half of exporter_heartbeat_interval_seconds "
                            f"({interval})")
    bouncer = data.get("exporter_pgbouncer")
    return ExporterSettings(
        enabled=data.get("exporter_enabled"),
        port=port,
        listen_address=data.get("exporter_listen_address"),
        heartbeat_interval_seconds=interval,
        max_agents=data.get("exporter_max_agents"),
        agent_heartbeat_cache_seconds=cache,
        statement_timeout_seconds=statement,
        scrape_timeout_seconds=scrape,
        long_query_seconds=data.get("exporter_long_query_seconds"),
        top_tables=data.get("exporter_top_tables"),
        max_label_values=data.get("exporter_max_label_values"),
        pgbouncer=_pgbouncer_deployed() if bouncer is None else bouncer,
        backup_status=data.get("exporter_backup_status"),
        tls=data.get("exporter_tls"),
        basic_auth_user=data.get("exporter_basic_auth_user"),
        log_level=data.get("exporter_log_level"),
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
        drop_orphan_slots=data.get("postgres_drop_orphan_slots"),
        reclone=data.get("postgres_replica_reclone"),
        hot_standby_feedback=data.get("postgres_replica_hot_standby_feedback"),
        max_lag_seconds=data.get("postgres_replica_max_lag_seconds"),
        max_lag_bytes=data.get("postgres_replica_max_lag_bytes"),
        replicator_connection_limit=data.get("postgres_replicator_connection_limit"),
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


# --- high availability: Patroni + etcd (deploy/ha.py) ----------------------------------------

@dataclass(frozen=True)
class HaSettings:
    enabled: bool
    vip: str | None  # the agents' one address, on the leader
    readonly_vip: str | None  # read-only clients' address: on a replica (the leader if none)
    vip_prefix: int
    vip_interface: str
    scope: str  # Patroni's cluster name
    synchronous_mode: bool
    synchronous_mode_strict: bool
    maximum_lag_on_failover: int  # bytes
    ttl: int
    loop_wait: int
    retry_timeout: int
    rest_port: int
    etcd_client_port: int
    etcd_peer_port: int

    @property
    def floating(self) -> list[str]:
        """The floating addresses every member may hold (PgBouncer listens on them, the
        certificates name them)."""
        return [a for a in (self.vip, self.readonly_vip) if a]


def ha_settings(data: Data) -> HaSettings:
    ha = HaSettings(
        enabled=data.get("postgres_ha"),
        vip=data.get("postgres_ha_vip"),
        readonly_vip=data.get("postgres_ha_readonly_vip"),
        vip_prefix=data.get("postgres_ha_vip_prefix"),
        vip_interface=data.get("postgres_ha_vip_interface"),
        scope=data.get("postgres_ha_scope"),
        synchronous_mode=data.get("postgres_ha_synchronous_mode"),
        synchronous_mode_strict=data.get("postgres_ha_synchronous_mode_strict"),
        maximum_lag_on_failover=data.get("postgres_ha_maximum_lag_on_failover"),
        ttl=data.get("postgres_ha_ttl"),
        loop_wait=data.get("postgres_ha_loop_wait"),
        retry_timeout=data.get("postgres_ha_retry_timeout"),
        rest_port=data.get("postgres_ha_rest_port"),
        etcd_client_port=data.get("postgres_ha_etcd_client_port"),
        etcd_peer_port=data.get("postgres_ha_etcd_peer_port"),
    )
    if ha.enabled and ha.vip is None:
        raise SettingsError("postgres_ha_vip", None, "HA mode needs the agents' floating address")
    if ha.readonly_vip is not None and ha.readonly_vip == ha.vip:
        raise SettingsError("postgres_ha_readonly_vip", ha.readonly_vip,
                            "must differ from postgres_ha_vip (the leader's address)")
    if ha.ttl < ha.loop_wait + 2 * ha.retry_timeout:
        # Patroni's own rule: a leader must get to renew its key before it expires.
        raise SettingsError("postgres_ha_ttl", ha.ttl, "expected >= postgres_ha_loop_wait + 2 x "
                            f"postgres_ha_retry_timeout ({ha.loop_wait + 2 * ha.retry_timeout})")
    return ha


def check_ha_topology(hosts: Sequence[tuple[str, Sequence[str], HaSettings, str]],
                      backup_hosts: Sequence[str] | None = None) -> None:
    """(name, groups, HA settings, service address) of every database host: HA mode is on for
    all of them or none, with 3+ members (etcd's quorum survives one loss) sharing one VIP.
    `backup_hosts` (the inventory's `backup` group, when known): HA mode needs one, since the
    repository cannot live on a member that may stop leading."""
    members = [(n, ha, a) for n, g, ha, a in hosts
               if {"postgres_primary", "postgres_replicas"} & set(g)]
    on = [n for n, ha, _ in members if ha.enabled]
    if not on:
        return
    off = [n for n, ha, _ in members if not ha.enabled]
    if off:
        raise SettingsError("postgres_ha", False, f"must be True on every database host "
                            f"({off[0]} has False, {on[0]} True)")
    if len(members) < 3:
        raise SettingsError("postgres_ha", True, f"needs 3 or more database hosts "
                            f"(postgres_primary + postgres_replicas), not {len(members)}")
    if backup_hosts is not None and not backup_hosts:
        raise SettingsError("backup", [], "HA mode needs a host in group backup: the pgBackRest "
                            "repository must outlive any member, and every leader archives "
                            "there")
    first = members[0][1]
    for name, ha, _ in members:
        for key in ("vip", "readonly_vip", "scope", "rest_port", "etcd_client_port",
                    "etcd_peer_port"):
            if getattr(ha, key) != getattr(first, key):
                raise SettingsError(f"postgres_ha_{key}", getattr(ha, key), "must be the same on "
                                    f"every member ({name} differs from {members[0][0]})")
    taken = {a: n for n, _, a in members}
    for key, address in (("vip", first.vip), ("readonly_vip", first.readonly_vip)):
        if address in taken:
            raise SettingsError(f"postgres_ha_{key}", address,
                                f"is {taken[address]}'s own address")


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
    return ReadinessSettings(
        load_evidence=data.get("readiness_load_evidence"),
        load_evidence_max_age_days=data.get("readiness_load_evidence_max_age_days"),
        load_min_ops_per_second=data.get("readiness_load_min_ops_per_second"),
        load_max_p95_ms=data.get("readiness_load_max_p95_ms"),
        load_max_error_percent=data.get("readiness_load_max_error_percent"),
        restore_drill_max_age_days=data.get("readiness_restore_drill_max_age_days"),
    )
