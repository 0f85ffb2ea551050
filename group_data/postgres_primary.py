"""Data for the primary database host (overrides all.py)."""

# --- streaming replication (deploy/replica.py) ---
# A replica removed from the inventory leaves its slot behind, and the slot keeps every WAL
# segment from then on (the BgdbReplicationSlotInactive alert fires). True: the deploy drops the
# bgdb_* slots no replica in the inventory uses. Set it for the deploy that removes a replica.
postgres_drop_orphan_slots = False
postgres_replicator_connection_limit = 10  # bgdb_replicator: replicas + base backups at once
