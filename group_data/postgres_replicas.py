"""Data for the read replicas (wins over all.py). Empty: every key has its default
(docs/settings.md; a replica's own are the postgres_replica_* keys). A replica gets the primary's
tuning, TLS, pg_hba and firewall from the same keys."""
