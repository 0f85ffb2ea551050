"""pyinfra entry point: `pyinfra inventory.py deploy.py`. Dispatches by group; every concern is
built from validated settings before any operation runs on any host."""

from __future__ import annotations

from pyinfra import host, inventory

from deploy import postgres, roles, schema
from deploy.settings import Data, app_settings, postgres_settings

data = Data(host.data.dict())
app = app_settings(data)

if "postgres_primary" in host.groups:
    pg = postgres_settings(data)
    replica_hosts = inventory.get_group("postgres_replicas", [])
    replicas = [str(h.data.get("service_address")) for h in replica_hosts]
    postgres.install_postgres(pg, app, replicas)
    roles.configure_roles(pg, app)
    schema.apply_migrations(pg, app)
