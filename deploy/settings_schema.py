"""The one declaration of every settings key: type, default, allowed values, concern, help, secret.

deploy/settings.py reads values through `Data.get`, which takes default, bounds and error text
from here; docs/settings.md is generated from it (`python -m deploy.settings_doc`), and unknown
keys are refused with a "did you mean". Adding a key is one `Key(...)` line in KEYS below.

A plain table of frozen dataclasses rather than pydantic or attrs: every error must stay one line
naming key, value, source and what is allowed (README documents some), values come from JSON, the
environment and Python files alike, and a dozen small kinds do it in less code than translating
a library's error objects back into that line.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CALENDAR = re.compile(r"^[A-Za-z0-9*,.:/~ -]{1,100}$")  # systemd OnCalendar, loosely
_ABS_PATH = re.compile(r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$")
_HTTP_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DNS_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


class SettingsError(ValueError):
    def __init__(self, key: str, value: object, allowed: str, source: str | None = None) -> None:
        self.key = key
        origin = f" (from {source})" if source else ""
        super().__init__(f"settings error: {key} = {value!r}{origin}: {allowed}")


# --- kinds: each parses a raw value or raises SettingsError; `allowed` is the docs' wording ----

@dataclass(frozen=True)
class Int:
    lo: int
    hi: int

    @property
    def allowed(self) -> str:
        return f"expected an integer {self.lo}-{self.hi}"

    def parse(self, key: str, value: Any, src: str | None) -> int:
        try:
            number = int(value)
            if isinstance(value, bool) or (isinstance(value, float) and number != value):
                raise ValueError
        except (TypeError, ValueError):
            raise SettingsError(key, value, self.allowed, src) from None
        if not self.lo <= number <= self.hi:
            raise SettingsError(key, value, self.allowed, src)
        return number


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return f"expected one of {', '.join(self.options)}"

    def parse(self, key: str, value: Any, src: str | None) -> str:
        if value not in self.options:
            raise SettingsError(key, value, self.allowed, src)
        return str(value)


@dataclass(frozen=True)
class Flag:
    allowed = "expected True or False"

    def parse(self, key: str, value: Any, src: str | None) -> bool:
        if not isinstance(value, bool):
            raise SettingsError(key, value, self.allowed, src)
        return value


@dataclass(frozen=True)
class Ident:
    allowed = "expected a lowercase SQL identifier"

    def parse(self, key: str, value: Any, src: str | None) -> str:
        if not isinstance(value, str) or not _IDENT.match(value):
            raise SettingsError(key, value, self.allowed, src)
        return value


@dataclass(frozen=True)
class Idents:
    allowed = "expected a list of role names"

    def parse(self, key: str, value: Any, src: str | None) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise SettingsError(key, value, self.allowed, src)
        return tuple(dict.fromkeys(Ident().parse(key, item, src) for item in value))


@dataclass(frozen=True)
class Strings:
    allowed = "expected a list of strings"

    def parse(self, key: str, value: Any, src: str | None) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence) or \
                not all(isinstance(v, str) for v in value):
            raise SettingsError(key, value, self.allowed, src)
        return tuple(dict.fromkeys(value))


@dataclass(frozen=True)
class Cidrs:
    required: bool
    allowed = "expected a list of CIDRs like ['10.0.0.0/24']"

    def parse(self, key: str, value: Any, src: str | None) -> tuple[Any, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise SettingsError(key, value, self.allowed, src)
        if self.required and not value:
            raise SettingsError(key, value, "expected at least one CIDR: nobody could connect",
                                src)
        nets = []
        for item in value:
            try:
                nets.append(ipaddress.ip_network(str(item), strict=True))
            except ValueError as exc:
                raise SettingsError(key, item, f"not a valid CIDR ({exc})", src) from None
        return tuple(nets)


@dataclass(frozen=True)
class Addresses:
    """IP addresses to listen on (and 'localhost' where `localhost`); never every interface."""
    localhost: bool
    allowed = "expected a list of IP addresses; '*' and 0.0.0.0 expose every interface"

    def parse(self, key: str, value: Any, src: str | None) -> tuple[str, ...]:
        if self.localhost and (value == "*" or (isinstance(value, list) and "*" in value)):
            raise SettingsError(key, value, "'*' exposes every interface: list the service "
                                "addresses", src)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise SettingsError(key, value, "expected a list of addresses", src)
        for addr in value:
            if self.localhost and addr == "localhost":
                continue
            try:
                ip = ipaddress.ip_address(str(addr))
            except ValueError:
                raise SettingsError(key, addr, "expected IP addresses" + (
                    " or 'localhost'" if self.localhost else "; '*' exposes every interface"),
                    src) from None
            if ip.is_unspecified:
                raise SettingsError(key, addr, "exposes every interface: list the service "
                                    "addresses", src)
        return tuple(str(a) for a in value)


@dataclass(frozen=True)
class Address:
    allowed = "expected an IP address, or None for the service address"

    def parse(self, key: str, value: Any, src: str | None) -> str:
        try:
            ip = ipaddress.ip_address(str(value))
        except ValueError:
            raise SettingsError(key, value, self.allowed, src) from None
        if ip.is_unspecified:
            raise SettingsError(key, value, "exposes every interface: give the service address",
                                src)
        return str(value)


@dataclass(frozen=True)
class HostName:
    allowed: str = "expected an IP address or DNS name"

    def parse(self, key: str, value: Any, src: str | None) -> str:
        try:
            return str(ipaddress.ip_address(str(value)))
        except ValueError:
            if isinstance(value, str) and _DNS_NAME.match(value):
                return value
            raise SettingsError(key, value, self.allowed, src) from None


@dataclass(frozen=True)
class Pattern:
    """A one-line string matching `regex`; `allowed` says what in words."""
    regex: str
    allowed: str
    no_dotdot: bool = False  # paths: no '..' component

    def parse(self, key: str, value: Any, src: str | None) -> str:
        if not isinstance(value, str) or not re.match(self.regex, value) or \
                (self.no_dotdot and "/../" in f"{value}/"):
            raise SettingsError(key, value, self.allowed, src)
        return value


@dataclass(frozen=True)
class File:
    allowed = "a file that exists on this machine"

    def parse(self, key: str, value: Any, src: str | None) -> Path:
        path = Path(str(value)).expanduser()
        if not path.is_file():
            raise SettingsError(key, str(value), "file does not exist on this machine", src)
        return path


@dataclass(frozen=True)
class AuditClasses:
    """pgaudit.log: a non-empty list of classes from `options`, or their comma-separated string;
    a class may be subtracted with '-'."""
    options: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return f"expected a list of {', '.join(self.options)} (or '-class' to subtract)"

    def parse(self, key: str, value: Any, src: str | None) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, Sequence) or not items:
            raise SettingsError(key, value, "expected a list of pgaudit classes like "
                                "['ddl', 'role']", src)
        names: list[str] = []
        for item in items:
            name = str(item).strip().lower()
            if not isinstance(item, str) or name.lstrip("-") not in self.options:
                raise SettingsError(key, item, "not a pgaudit.log class: expected one of "
                                    f"{', '.join(self.options)} (or '-class' to subtract)", src)
            names.append(name)
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Overrides:
    allowed = "expected a dict of name -> value"

    def parse(self, key: str, value: Any, src: str | None) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise SettingsError(key, value, self.allowed, src)
        return {str(k): v if isinstance(v, str) else _guc_text(v) for k, v in value.items()}


def _guc_text(value: object) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


Kind = (Int | Choice | Flag | Ident | Idents | Strings | Cidrs | Addresses | Address | HostName
        | Pattern | File | AuditClasses | Overrides)

CALENDAR = Pattern(_CALENDAR.pattern, "expected a systemd OnCalendar expression such as "
                   "'Sun *-*-* 01:00:00'")
ABS_PATH = Pattern(_ABS_PATH.pattern, "expected an absolute path without spaces or '..'",
                   no_dotdot=True)
HTTP_USER = Pattern(_HTTP_USER.pattern, "expected 1-64 letters, digits, '.', '_' or '-', or None")
PGAUDIT_CLASSES = ("read", "write", "function", "role", "ddl", "misc", "misc_set", "all")
UPGRADES_DEFAULT_ORIGINS = (
    "origin=Debian,codename=${distro_codename}-security,label=Debian-Security",
    "origin=Debian,codename=${distro_codename},label=Debian-Security",
)


@dataclass(frozen=True)
class Key:
    name: str
    kind: Kind
    default: Any  # None: unset, and None is then an allowed value (see `help`)
    concern: str
    help: str
    env: str | None = None  # an environment variable that wins over host data
    secret: bool = False  # never printed (no key holds a secret today: passwords are files)


P, R, B, M, H = "postgres", "replicas", "backup", "maintenance", "ha"
KEYS_LIST: tuple[Key, ...] = (
    # the agents' application database: the seed's POSTGRESQL_* variables win
    Key("app_database", Ident(), "background_agents", "app", "the agents' database",
        env="POSTGRESQL_DATABASE"),
    Key("app_user", Ident(), "bg_agents_user", "app", "the agents' login role",
        env="POSTGRESQL_USER"),
    Key("app_port", Int(1, 65535), 5432, "app", "port the agents connect to",
        env="POSTGRESQL_PORT"),
    Key("app_ssl_mode", Choice(SSL_MODES), "verify-full", "app", "the agents' libpq sslmode",
        env="POSTGRESQL_SSL_MODE"),
    Key("app_pool_size", Int(1, 10000), 10, "app", "the agents' pool; PgBouncer's default pool",
        env="POSTGRESQL_POOL_SIZE"),
    Key("app_max_agents", Int(1, 1_000_000), 1000, "app", "agents in the fleet, each with up to "
        "app_pool_size connections: sizes PgBouncer's max_client_conn and file limit"),
    Key("app_timeout", Int(1, 3600), 30, "app", "seconds; PgBouncer's query_wait_timeout",
        env="POSTGRESQL_TIMEOUT"),
    Key("app_host", HostName(), None, "app", "where agents connect; None = the primary's "
        "service address", env="POSTGRESQL_HOST"),
    # PostgreSQL server
    Key("postgres_version", Int(12, 17), None, P, "major; None = the distribution's (Debian 11: "
        "13, 12: 15, 13: 17)"),
    Key("postgres_port", Int(1, 65535), 5432, P, "the server's port"),
    Key("postgres_cluster", Ident(), "main", P, "pg_createcluster's cluster name"),
    Key("postgres_locale", Choice(("C.UTF-8", "en_US.UTF-8", "C")), "C.UTF-8", P, "initdb locale"),
    Key("postgres_workload", Choice(("web", "oltp", "mixed", "dw")), "oltp", P,
        "PGTune's workload"),
    Key("postgres_disk", Choice(("ssd", "hdd", "san")), "ssd", P, "PGTune's disk kind"),
    Key("postgres_memory_mb", Int(256, 1 << 24), None, P, "tune for this much RAM instead of "
        "the host's (shared hosts); None = the host's"),
    Key("postgres_listen_addresses", Addresses(localhost=True), [], P, "[] = the host's service "
        "address + localhost; never '*'"),
    Key("postgres_allowed_cidrs", Cidrs(required=True), [], P, "application clients (hostssl + "
        "scram); must be set"),
    Key("postgres_admin_cidrs", Cidrs(required=False), [], P, "break-glass superuser bgdb_admin "
        "over TLS; [] = none"),
    Key("postgres_monitoring_cidrs", Cidrs(required=False), [], P, "Prometheus servers that "
        "scrape the exporter"),
    Key("postgres_allow_public_access", Flag(), False, P, "LOUD: allow 0.0.0.0/0, ::/0 and "
        "CIDRs wider than the bounds below; `bgdb check` flags it"),
    Key("postgres_cidr_min_prefix_v4", Int(1, 32), 8, P, "IPv4 CIDRs wider than this prefix "
        "need postgres_allow_public_access"),
    Key("postgres_cidr_min_prefix_v6", Int(1, 128), 32, P, "IPv6 CIDRs wider than this prefix "
        "need postgres_allow_public_access"),
    Key("postgres_overrides", Overrides(), {}, P, "postgresql.conf settings, e.g. {'work_mem': "
        "'16MB'}; checked against pg_settings, bundle-owned ones refused"),
    Key("postgres_ssl_cert_file", File(), None, P, "bring your own certificate: set all three, "
        "or none (the bundle's CA)"),
    Key("postgres_ssl_key_file", File(), None, P, "its private key"),
    Key("postgres_ssl_ca_file", File(), None, P, "the CA that clients verify"),
    Key("postgres_firewall", Flag(), True, P, "nftables: the bundle's ports only from the CIDRs"),
    Key("ssh_port", Int(1, 65535), 22, P, "sshd's port (the firewall keeps it open; pyinfra's)"),
    Key("postgres_log_min_duration_ms", Int(-1, 86_400_000), 1000, P, "log statements slower "
        "than this (the seed's log_min_duration_statement; pgBadger's slow queries); -1 = off"),
    Key("postgres_app_connection_limit", Int(1, 100000), 200, P, "app_user's direct connections "
        "(the role's CONNECTION LIMIT adds PgBouncer's server connections on top)"),
    Key("postgres_superuser_reserved_connections", Int(1, 100), 3, P, "kept for superusers"),
    # hardening (CIS PostgreSQL Benchmark; `bgdb check` reports each control)
    Key("postgres_superuser_connection_limit", Int(1, 1000), 10, "security", "CONNECTION LIMIT "
        "of postgres (CIS 5.5; PostgreSQL exempts superusers, so it records intent only)"),
    Key("postgres_password_check", Flag(), True, "security", "preload passwordcheck: plaintext "
        "passwords under 8 characters or without letters and digits refused (CIS 5.6)"),
    Key("postgres_auth_delay_ms", Int(0, 60000), 500, "security", "auth_delay: each failed "
        "login waits this long, holding a connection slot (CIS 5.7); 0 = not loaded"),
    Key("postgres_set_user", Flag(), True, "security", "set_user extension (CIS 4.8): logged "
        "superuser escalation; preloaded (restart); not packaged for PostgreSQL 13 (Debian 11)"),
    # audit logging (pgaudit, CIS 3.2)
    Key("postgres_pgaudit", Flag(), True, "audit", "False: the next deploy drops the extension"),
    Key("postgres_pgaudit_log", AuditClasses(PGAUDIT_CLASSES), ["ddl", "role"], "audit",
        "pgaudit.log classes; ddl and role are the minimum"),
    Key("postgres_pgaudit_log_relation", Flag(), False, "audit", "a line per relation of every "
        "SELECT/DML: log volume"),
    Key("postgres_pgaudit_log_parameter", Flag(), False, "audit", "bind values: passwords and "
        "personal data in the log"),
    # read replicas
    Key("postgres_drop_orphan_slots", Flag(), False, R, "primary: drop bgdb_* slots no replica "
        "in the inventory uses"),
    Key("postgres_replica_reclone", Flag(), False, R, "replica: replace a data directory that "
        "is not a streaming standby (per host, one deploy)"),
    Key("postgres_replica_hot_standby_feedback", Flag(), True, R, "dashboards' queries are not "
        "cancelled by the primary's vacuum"),
    Key("postgres_replica_max_lag_seconds", Int(1, 86400), 30, R, "readiness: replay lag bound"),
    Key("postgres_replica_max_lag_bytes", Int(1 << 16, 1 << 40), 64 << 20, R,
        "readiness: WAL received but not replayed"),
    Key("postgres_replicator_connection_limit", Int(1, 1000), 10, R,
        "bgdb_replicator: replicas + base backups at once"),
    # high availability: Patroni + etcd on the database hosts (deploy/ha.py)
    Key("postgres_ha", Flag(), False, H, "the hosts of postgres_primary and postgres_replicas "
        "(3 or more) form one Patroni cluster with etcd on the same hosts; postgres_primary only "
        "bootstraps it, the leader is whoever Patroni elects; needs a host in group backup (the "
        "pgBackRest repository every leader archives to)"),
    Key("postgres_ha_vip", Address(), None, H, "the agents' one address (POSTGRESQL_HOST): "
        "held by the leader (keepalived, checking Patroni's /primary), answered by its PgBouncer; "
        "required in HA mode, free on the hosts' network"),
    Key("postgres_ha_readonly_vip", Address(), None, H, "read-only clients' address "
        "(dashboards, reports as bg_agents_readonly): held by a replica whose Patroni answers "
        "/replica, by the leader when no replica runs; unset: none"),
    Key("postgres_ha_vip_prefix", Int(8, 32), 24, H, "prefix length of postgres_ha_vip and "
        "postgres_ha_readonly_vip"),
    Key("postgres_ha_vip_interface", Pattern(r"^[A-Za-z0-9_.-]{1,15}$", "expected a network "
        "interface name"), "eth0", H, "the interface that carries postgres_ha_vip"),
    Key("postgres_ha_scope", Ident(), "bgdb", H, "Patroni's cluster name (scope), its key "
        "prefix in etcd"),
    Key("postgres_ha_synchronous_mode", Flag(), True, H, "a commit returns once a standby has "
        "it too, so a failover loses no acknowledged write; costs a round trip per commit"),
    Key("postgres_ha_synchronous_mode_strict", Flag(), False, H, "refuse writes when no "
        "standby is up (False: the leader runs alone rather than stall)"),
    Key("postgres_ha_maximum_lag_on_failover", Int(0, 1 << 40), 1 << 20, H, "bytes a replica "
        "may be behind and still be promoted"),
    Key("postgres_ha_ttl", Int(10, 3600), 15, H, "seconds the leader key lives without renewal: "
        "how long a vanished leader holds the cluster"),
    Key("postgres_ha_loop_wait", Int(1, 600), 3, H, "seconds between Patroni's HA loops"),
    Key("postgres_ha_retry_timeout", Int(1, 600), 5, H, "seconds Patroni retries etcd and "
        "PostgreSQL before demoting; ttl >= loop_wait + 2 x retry_timeout"),
    Key("postgres_ha_rest_port", Int(1, 65535), 8008, H, "Patroni's REST API (members and "
        "admin/monitoring addresses only)"),
    Key("postgres_ha_etcd_client_port", Int(1, 65535), 2379, H, "etcd's client port (TLS)"),
    Key("postgres_ha_etcd_peer_port", Int(1, 65535), 2380, H, "etcd's peer port (TLS)"),
    # backups (pgBackRest, pg_dump); schedules are systemd OnCalendar expressions (host time)
    Key("backup_stanza", Ident(), "bgdb", B, "pgBackRest stanza name"),
    Key("backup_repo_path", ABS_PATH, "/var/lib/pgbackrest", B, "the repository, on the primary "
        "or the backup host"),
    Key("backup_repo_host", HostName("expected the backup host's address or DNS name"), None, B,
        "set by the inventory: the `backup` host's address"),
    Key("backup_repo_host_user", Ident(), "pgbackrest", B, "the backup host's repository owner"),
    Key("backup_info_schedule", CALENDAR, "*:0/15", B, "with a backup host: the primary records "
        "`pgbackrest info`"),
    Key("backup_repo_encrypt", Flag(), True, B, "aes-256-cbc; key in .secrets/passwords/"
        "pgbackrest-cipher"),
    Key("backup_retention_days", Int(1, 3650), 30, B, "any point of the last N days restorable"),
    Key("backup_archive_async", Flag(), True, B, "archive-push through pgBackRest's async spool"),
    Key("backup_archive_timeout", Int(10, 3600), 60, B, "seconds: WAL switch so idle periods "
        "are archived"),
    Key("backup_compress", Choice(("zst", "lz4", "gz", "none")), "zst", B, "compression"),
    Key("backup_process_max", Int(1, 64), 2, B, "parallel processes for backup/restore"),
    Key("backup_full_schedule", CALENDAR, "Sun *-*-* 01:00:00", B, "weekly full backup"),
    Key("backup_diff_schedule", CALENDAR, "Mon..Sat *-*-* 01:00:00", B, "daily differential"),
    Key("backup_verify_schedule", CALENDAR, "Sun *-*-* 06:00:00", B, "`pgbackrest verify`"),
    Key("backup_dump_schedule", CALENDAR, "*-*-* 02:30:00", B, "daily pg_dump, checked by "
        "pg_restore"),
    Key("backup_dump_dir", ABS_PATH, "/var/backups/bgdb", B, "where the dumps go"),
    Key("backup_dump_keep_days", Int(1, 3650), 7, B, "dumps kept"),
    Key("backup_status_dir", ABS_PATH, "/var/lib/bgdb/status", B, "job status JSON (backup.json "
        "for the exporter)"),
    # scheduled maintenance (sql/maintenance/*.sql), primary only
    Key("maintenance_daily_schedule", CALENDAR, "*-*-* 03:30:00", M, "ANALYZE, views, long "
        "queries"),
    Key("maintenance_weekly_schedule", CALENDAR, "Sun *-*-* 04:00:00", M, "VACUUM (ANALYZE), "
        "retention"),
    Key("maintenance_monthly_schedule", CALENDAR, "*-*-01 05:00:00", M, "REINDEX CONCURRENTLY "
        "of bloated indexes"),
    Key("maintenance_retention_days", Int(1, 3650), 30, M, "older time-series partitions dropped"),
    Key("maintenance_premake_days", Int(1, 365), 14, M, "daily partitions kept ready ahead"),
    Key("maintenance_long_query_seconds", Int(1, 86400), 300, M, "longer queries: WARNING "
        "system events"),
    # security updates (unattended-upgrades) on every database and backup host
    Key("upgrades_enabled", Flag(), True, "upgrades", "False: updates are left to you"),
    Key("upgrades_origins", Strings(), list(UPGRADES_DEFAULT_ORIGINS), "upgrades",
        "Unattended-Upgrade::Origins-Pattern; must include a security origin"),
    Key("upgrades_package_blacklist", Strings(), ["postgresql-", "pgbouncer"], "upgrades",
        "not upgraded automatically (their upgrade restarts the service)"),
    # PgBouncer (every database host)
    Key("pgbouncer_port", Int(1, 65535), 6432, "pgbouncer", "clients' port (TLS)"),
    Key("pgbouncer_listen_addresses", Addresses(localhost=False), [], "pgbouncer",
        "[] = the host's service address + 127.0.0.1"),
    Key("pgbouncer_pool_mode", Choice(("session", "transaction", "statement")), "transaction",
        "pgbouncer", "pool_mode"),
    Key("pgbouncer_default_pool_size", Int(1, 10000), None, "pgbouncer", "server connections "
        "per database and role; None = half of pgbouncer_max_db_connections, less the reserve, "
        "at least app_pool_size"),
    Key("pgbouncer_max_db_connections", Int(1, 100000), None, "pgbouncer", "server connections "
        "of all roles' pools of a database together (queued beyond); None = half of "
        "max_connections"),
    Key("pgbouncer_reserve_pool_size", Int(0, 10000), 5, "pgbouncer", "extra connections when "
        "clients wait too long"),
    Key("pgbouncer_reserve_pool_timeout", Int(0, 3600), 3, "pgbouncer", "seconds before the "
        "reserve is used"),
    Key("pgbouncer_max_client_conn", Int(1, 1_000_000), None, "pgbouncer", "client connections; "
        "None = app_max_agents x app_pool_size + 100 (operators, monitoring)"),
    Key("pgbouncer_max_prepared_statements", Int(0, 100000), 200, "pgbouncer", "protocol-level "
        "prepared statements per server connection in transaction pooling; only where the "
        "host's PgBouncer is 1.21+ (Debian 13), older ones force the simple protocol; 0 = off"),
    Key("pgbouncer_query_wait_timeout", Int(0, 86400), None, "pgbouncer", "seconds a client may "
        "queue; None = app_timeout"),
    Key("pgbouncer_server_reset_query", Pattern(r"^[^\n\r;]*\Z", "expected one SQL statement"),
        "DISCARD ALL", "pgbouncer", "used in session mode"),
    Key("pgbouncer_server_idle_timeout", Int(0, 86400), 600, "pgbouncer", "seconds"),
    Key("pgbouncer_server_lifetime", Int(0, 604800), 3600, "pgbouncer", "seconds"),
    Key("pgbouncer_client_idle_timeout", Int(0, 604800), 0, "pgbouncer", "seconds; 0 = never"),
    Key("pgbouncer_idle_transaction_timeout", Int(0, 86400), 600, "pgbouncer", "seconds"),
    Key("pgbouncer_admin_users", Idents(), [], "pgbouncer", "admin console: nobody by default"),
    Key("pgbouncer_stats_users", Idents(), ["bg_agents_monitor"], "pgbouncer",
        "SHOW POOLS/STATS: the exporter's role"),
    # the bgdb exporter (Prometheus scrapes it from postgres_monitoring_cidrs)
    Key("exporter_enabled", Flag(), True, "exporter", "a systemd service on database hosts"),
    Key("exporter_port", Int(1, 65535), 9847, "exporter", "not 9187 (postgres_exporter's)"),
    Key("exporter_listen_address", Address(), None, "exporter", "None = the host's service "
        "address; never 0.0.0.0"),
    Key("exporter_heartbeat_interval_seconds", Int(1, 86400), 60, "exporter", "the agents' "
        "interval"),
    Key("exporter_max_agents", Int(1, 100000), 200, "exporter", "per-agent series cap"),
    Key("exporter_agent_heartbeat_cache_seconds", Int(0, 43200), None, "exporter", "seconds "
        "the per-agent heartbeat search's rows are reused between scrapes, their ages advanced "
        "(0 = every scrape); below half of exporter_heartbeat_interval_seconds; None = 0.4 x "
        "the interval"),
    Key("exporter_statement_timeout_seconds", Int(1, 60), 2, "exporter", "per query"),
    Key("exporter_scrape_timeout_seconds", Int(1, 300), 5, "exporter", "no query starts after "
        "this much of a scrape"),
    Key("exporter_long_query_seconds", Int(1, 86400), 300, "exporter", "long-running queries"),
    Key("exporter_top_tables", Int(1, 1000), 20, "exporter", "tables with size series"),
    Key("exporter_max_label_values", Int(1, 1000), 50, "exporter", "label value cap"),
    Key("exporter_pgbouncer", Flag(), None, "exporter", "scrape PgBouncer; None = yes where "
        "it is deployed"),
    Key("exporter_backup_status", Flag(), True, "exporter", "backup freshness metrics"),
    Key("exporter_tls", Flag(), False, "exporter", "https with the host's certificate"),
    Key("exporter_basic_auth_user", HTTP_USER, None, "exporter", "basic auth on /metrics; "
        "password in .secrets/passwords/bgdb-exporter-scrape"),
    Key("exporter_log_level", Choice(("DEBUG", "INFO", "WARNING", "ERROR")), "INFO", "exporter",
        "log level"),
    # Prometheus, Alertmanager and node exporters (the `monitoring` group; deploy/monitoring.py)
    Key("monitoring_allowed_cidrs", Cidrs(required=False), [], "monitoring", "who may reach "
        "Prometheus (9090) and Alertmanager (9093); [] = the monitoring host alone"),
    Key("monitoring_scrape_interval_seconds", Int(1, 3600), 15, "monitoring", "Prometheus "
        "scrape interval"),
    Key("monitoring_evaluation_interval_seconds", Int(1, 3600), 15, "monitoring", "rule "
        "evaluation interval"),
    Key("monitoring_retention_days", Int(1, 3650), 15, "monitoring", "Prometheus keeps "
        "samples this long"),
    Key("monitoring_retention_size_mb", Int(0, 1 << 24), 0, "monitoring", "and at most this "
        "much disk (0 = no size bound)"),
    Key("monitoring_node_exporter", Flag(), True, "monitoring", "prometheus-node-exporter on "
        "every database and backup host (disk, CPU, memory)"),
    Key("monitoring_alert_webhook_urls", Strings(), [], "monitoring", "Alertmanager posts "
        "alerts to these http(s) URLs"),
    Key("monitoring_alert_email_to", Strings(), [], "monitoring", "and mails them here"),
    Key("monitoring_smtp_smarthost", Pattern(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$", "expected "
        "host:port"), None, "monitoring", "SMTP relay for the mails (needed with email_to)"),
    Key("monitoring_smtp_from", Pattern(r"^[^@\s]+@[^@\s]+$", "expected an e-mail address"),
        None, "monitoring", "sender of the mails"),
    Key("monitoring_smtp_auth_username", Pattern(r"^\S+$", "expected a user name"), None,
        "monitoring", "SMTP login (password: $BGDB_SMTP_PASSWORD or .secrets/passwords/"
        "alertmanager_smtp); none: no SMTP auth"),
    Key("monitoring_smtp_require_tls", Flag(), True, "monitoring", "mails only over STARTTLS "
        "(False: a relay on a trusted network without TLS)"),
    Key("monitoring_alert_group_wait_seconds", Int(0, 3600), 30, "monitoring", "Alertmanager "
        "waits this long to batch a new group's first notification"),
    # pgBadger log reports on database hosts (deploy/pgbadger.py, `bgdb report`)
    Key("pgbadger_enabled", Flag(), True, "monitoring", "incremental pgBadger report of the "
        "PostgreSQL log on every database host"),
    Key("pgbadger_schedule", CALENDAR, "*-*-* *:10:00", "monitoring", "when the report is "
        "brought up to date"),
    Key("pgbadger_retention_days", Int(1, 3650), 14, "monitoring", "days of reports kept"),
    # readiness evidence (`bgdb check`)
    Key("readiness_load_evidence", Pattern(r"^[^\n\r]*\S[^\n\r]*\Z", "expected a file path "
        "(relative to the repository, or absolute)"), "reports/load_evidence.json", "readiness",
        "bench/load_agents.py --evidence file"),
    Key("readiness_load_evidence_max_age_days", Int(1, 365), 7, "readiness", "older does not "
        "count"),
    Key("readiness_load_min_ops_per_second", Int(1, 10_000_000), 1000, "readiness", "seed KPI"),
    Key("readiness_load_max_p95_ms", Int(1, 600_000), 100, "readiness", "seed KPI"),
    Key("readiness_load_max_error_percent", Int(0, 100), 5, "readiness", "seed KPI"),
    Key("readiness_restore_drill_max_age_days", Int(1, 3650), 30, "readiness", "last successful "
        "`bgdb.restore`"),
)
KEYS: dict[str, Key] = {k.name: k for k in KEYS_LIST}

# Set by pyinfra or the inventory itself (deploy/hostdata.py), not settings of the bundle.
INVENTORY_KEYS = frozenset({"service_address"})


def _pyinfra_keys() -> frozenset[str]:
    """pyinfra's SSH connector data (ssh_*) and global arguments (_sudo, ...)."""
    from pyinfra.api.arguments import all_argument_meta
    from pyinfra.connectors.ssh import connector_data_meta

    return frozenset(connector_data_meta) | frozenset(all_argument_meta)


def check_known(data: Mapping[str, Any], source: str) -> None:
    """Every key is the bundle's, pyinfra's or the inventory's: a typo is not silently ignored."""
    known: frozenset[str] | None = None
    for name in data:
        if name in KEYS or name in INVENTORY_KEYS:
            continue
        known = known or _pyinfra_keys()
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), [*KEYS, *known], n=3, cutoff=0.75)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise SettingsError(str(name), data[name], f"unknown key: {hint}every key is in "
                            "docs/settings.md", source)


class Data:
    """Looks a key up in its environment variable first, then in host/group data, then in the
    schema's default; `origins` names where each host data key came from (for errors)."""

    def __init__(self, data: Mapping[str, Any], env: Mapping[str, str] | None = None,
                 origins: Mapping[str, str] | None = None) -> None:
        self._data = data
        self._env = os.environ if env is None else env
        self._origins = origins or {}

    def raw(self, key: str) -> tuple[Any, str | None]:
        spec = KEYS.get(key)
        if spec is None:  # a programming error, not the operator's: declare the key in KEYS
            raise KeyError(f"settings key {key!r} is not declared in deploy/settings_schema.py")
        if spec.env and self._env.get(spec.env, "") != "":
            return self._env[spec.env], spec.env
        value = self._data.get(key)
        if value is None:
            return spec.default, None
        return value, self._origins.get(key)

    def get(self, key: str) -> Any:
        """The key's value, checked by its kind; None where the key allows it (default None)."""
        value, src = self.raw(key)
        if value is None and KEYS[key].default is None:
            return None
        return KEYS[key].kind.parse(key, value, src)
