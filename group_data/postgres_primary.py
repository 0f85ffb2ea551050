"""Data for the primary database host (wins over all.py). Empty: every key has its default
(docs/settings.md; the primary's own are postgres_drop_orphan_slots and
postgres_replicator_connection_limit)."""
