"""Data for the read replicas (overrides all.py). A replica gets the primary's tuning, TLS,
pg_hba and firewall from the same keys; these are its own (deploy/settings.py: replica_settings).
"""

# Replace this host's data directory with a fresh copy of the primary when it is not a
# streaming standby (a former primary, a replica whose slot was lost). A healthy streaming
# replica is never copied again, flag or not. Set it per host, for one deploy.
postgres_replica_reclone = False
# Dashboards' long queries are not cancelled by the primary's vacuum; the primary keeps the row
# versions they still see (some bloat while they run). False: such queries may be cancelled
# after max_standby_streaming_delay (30 s).
postgres_replica_hot_standby_feedback = True
# Readiness checks: a replica behind by more than this fails `bgdb check`.
postgres_replica_max_lag_seconds = 30  # age of the last replayed transaction, when behind
postgres_replica_max_lag_bytes = 64 * 1024 * 1024  # WAL received but not replayed yet
