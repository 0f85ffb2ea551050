"""Data for every host. Keys are prefixed by concern; deploy/settings.py validates them all.

Secrets never go here: passwords come from the environment (POSTGRESQL_PASSWORD for the
application role) or the gitignored secrets directory, where the bundle generates them.
"""

# --- the agents' application database (the seed's POSTGRESQL_* variables override these) ---
app_database = "background_agents"  # POSTGRESQL_DATABASE
app_user = "bg_agents_user"  # POSTGRESQL_USER
app_port = 5432  # POSTGRESQL_PORT
app_ssl_mode = "verify-full"  # POSTGRESQL_SSL_MODE
app_pool_size = 10  # POSTGRESQL_POOL_SIZE
app_timeout = 30  # POSTGRESQL_TIMEOUT, seconds

# --- PostgreSQL server ---
postgres_version = None  # 12-17; None = the distribution's (Debian 11: 13, 12: 15, 13: 17)
postgres_workload = "oltp"  # web | oltp | mixed | dw (PGTune's workloads)
postgres_disk = "ssd"  # ssd | hdd | san
postgres_memory_mb = None  # tune for this much RAM instead of the host's (shared hosts)
postgres_port = 5432
postgres_listen_addresses: list[str] = []  # [] = the host's service address + localhost; never "*"
postgres_allowed_cidrs: list[str] = []  # application clients (hostssl + scram); must be set
postgres_admin_cidrs: list[str] = []  # break-glass superuser bgdb_admin over TLS; empty = none
postgres_monitoring_cidrs: list[str] = []  # Prometheus servers that scrape the exporter
postgres_overrides: dict[str, str] = {}  # any postgresql.conf setting, e.g. {"work_mem": "16MB"}
postgres_ssl_cert_file = None  # bring your own certificate: set all three, or none
postgres_ssl_key_file = None
postgres_ssl_ca_file = None
postgres_firewall = True  # nftables: our ports only from the CIDRs above
postgres_app_connection_limit = 200
# Audit logging with pgaudit (CIS 3.2): AUDIT lines in the PostgreSQL log. Classes: read, write,
# function, role, ddl, misc, misc_set, all ('-class' subtracts); ddl and role are the minimum.
postgres_pgaudit = True  # False: the next deploy drops the extension and unloads the library
postgres_pgaudit_log = ["ddl", "role"]  # schema and privilege changes, not the agents' traffic
postgres_pgaudit_log_relation = False  # a line per relation of every SELECT/DML: log volume
postgres_pgaudit_log_parameter = False  # bind values: passwords and personal data in the log

# --- security updates: unattended-upgrades on every database and backup host ---
upgrades_enabled = True  # False: the bundle leaves updates to you (its apt file is removed)
upgrades_origins = [  # Unattended-Upgrade::Origins-Pattern; must include a security origin
    "origin=Debian,codename=${distro_codename}-security,label=Debian-Security",
    "origin=Debian,codename=${distro_codename},label=Debian-Security",
]
# Not upgraded automatically (their upgrade restarts the service): apply in a maintenance window.
upgrades_package_blacklist = ["postgresql-", "pgbouncer"]

# --- backups: pgBackRest (WAL archiving, full/diff backups, verify) and a daily pg_dump ---
# Schedules are systemd OnCalendar expressions (host time); timers run on the primary, or with a
# host in group `backup` the backups and verify run there and the repository lives there (README).
backup_stanza = "bgdb"  # pgBackRest stanza name
backup_repo_path = "/var/lib/pgbackrest"  # the repository, on the primary or the backup host
backup_info_schedule = "*:0/15"  # with a backup host: the primary records `pgbackrest info`
backup_repo_encrypt = True  # aes-256-cbc; key generated into .secrets/passwords/pgbackrest-cipher
backup_retention_days = 30  # any point in time of the last 30 days stays restorable
backup_archive_async = True  # archive-push through pgBackRest's async spool (batches, parallel)
backup_archive_timeout = 60  # seconds: force a WAL switch so idle periods still get archived
backup_compress = "zst"  # zst | lz4 | gz | none
backup_process_max = 2  # parallel processes for backup/restore
backup_full_schedule = "Sun *-*-* 01:00:00"  # weekly full backup
backup_diff_schedule = "Mon..Sat *-*-* 01:00:00"  # daily differential backup
backup_verify_schedule = "Sun *-*-* 06:00:00"  # weekly `pgbackrest verify` of the repository
backup_dump_schedule = "*-*-* 02:30:00"  # daily pg_dump (custom format), checked by pg_restore
backup_dump_dir = "/var/backups/bgdb"
backup_dump_keep_days = 7
backup_status_dir = "/var/lib/bgdb/status"  # job status JSON; backup.json is for the exporter

# --- scheduled maintenance (sql/maintenance/*.sql), primary only ---
maintenance_daily_schedule = "*-*-* 03:30:00"  # ANALYZE, refresh views, log long queries
maintenance_weekly_schedule = "Sun *-*-* 04:00:00"  # VACUUM (ANALYZE), retention, db size
maintenance_monthly_schedule = "*-*-01 05:00:00"  # REINDEX CONCURRENTLY of bloated indexes
maintenance_retention_days = 30  # time-series partitions older than this are dropped
maintenance_premake_days = 14  # daily partitions kept ready ahead
maintenance_long_query_seconds = 300  # longer-running queries become WARNING system events

# --- PgBouncer (every database host; clients use port 6432 with TLS) ---
# Sizing guard: (default_pool_size + reserve_pool_size) x databases x pooled roles (4) +
# superuser_reserved_connections must fit in max_connections, or the deploy stops before any host.
pgbouncer_port = 6432
pgbouncer_listen_addresses: list[str] = []  # [] = the host's service address + 127.0.0.1
pgbouncer_pool_mode = "transaction"  # session | transaction | statement
pgbouncer_default_pool_size = None  # server connections per database and role; None = app_pool_size
pgbouncer_reserve_pool_size = 5  # extra server connections when clients wait too long
pgbouncer_reserve_pool_timeout = 3  # seconds a client waits before the reserve is used
pgbouncer_max_client_conn = 1000
pgbouncer_query_wait_timeout = None  # seconds a client may queue; None = app_timeout
pgbouncer_server_reset_query = "DISCARD ALL"  # used in session mode
pgbouncer_server_idle_timeout = 600  # close server connections idle this long (seconds)
pgbouncer_server_lifetime = 3600  # recycle server connections after this long
pgbouncer_client_idle_timeout = 0  # 0 = never close idle clients
pgbouncer_idle_transaction_timeout = 600  # close a client idle inside a transaction this long
pgbouncer_admin_users: list[str] = []  # admin console (RELOAD, PAUSE...): nobody by default
pgbouncer_stats_users = ["bg_agents_monitor"]  # SHOW POOLS/STATS: the exporter's role

# --- the bgdb exporter (exporters/; Prometheus scrapes it from postgres_monitoring_cidrs) ---
exporter_enabled = True  # a systemd service on every primary, as the system user bgdb-exporter
exporter_port = 9847  # not 9187 (postgres_exporter's)
exporter_listen_address = None  # None = the host's service address; never 0.0.0.0
exporter_heartbeat_interval_seconds = 60  # the agents' interval; missed beats count from it
exporter_max_agents = 200  # per-agent series for at most this many agents (most overdue first)
exporter_statement_timeout_seconds = 2  # per query; a hung database gives bgdb_up 0 within it
exporter_scrape_timeout_seconds = 5  # no query starts after this much of one scrape
exporter_long_query_seconds = 300  # queries running longer count as long-running
exporter_top_tables = 20  # tables with size and dead-tuple series
exporter_max_label_values = 50  # cap on states, event types and models as label values
exporter_pgbouncer = None  # scrape PgBouncer's admin console; None = yes where it is deployed
exporter_backup_status = True  # backup freshness from the backup jobs' status file
exporter_tls = False  # https with the host's certificate (clients trust .secrets/ca/ca.crt)
# Basic auth on /metrics, e.g. "prometheus"; password: .secrets/passwords/bgdb-exporter-scrape
exporter_basic_auth_user = None
exporter_log_level = "INFO"  # DEBUG | INFO | WARNING | ERROR

# --- readiness evidence (`bgdb check`): a recent load test and a recent restore drill ---
readiness_load_evidence = "reports/load_evidence.json"  # bench/load_agents.py --evidence
readiness_load_evidence_max_age_days = 7  # an older load test does not count
readiness_load_min_ops_per_second = 1000  # seed KPIs, met by one run against the primary:
readiness_load_max_p95_ms = 100  # p95 latency under this,
readiness_load_max_error_percent = 5  # errors under this share of operations
readiness_restore_drill_max_age_days = 30  # last successful `bgdb.restore` of the primary
