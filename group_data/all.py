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
postgres_version = 15  # 12-17; Debian 12 ships 15
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
