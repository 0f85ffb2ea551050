"""Validate every concern's settings for every host, before any host is contacted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from deploy.hostdata import InventoryHost
from deploy.monitoring_config import monitoring_settings, pgbadger_settings
from deploy.settings import (
    SettingsError,
    app_settings,
    backup_settings,
    check_backup_topology,
    check_ha_topology,
    check_replication_topology,
    exporter_settings,
    ha_settings,
    maintenance_settings,
    pgbouncer_settings,
    postgres_settings,
    readiness_settings,
    replica_settings,
    server_config,
    upgrade_settings,
)

DB_GROUPS = {"postgres_primary", "postgres_replicas"}


def validate_hosts(hosts: Iterable[InventoryHost]) -> None:
    hosts = list(hosts)
    check_replication_topology([(h.name, h.groups) for h in hosts])
    check_backup_topology([(h.name, h.groups) for h in hosts])
    check_ha_topology([(h.name, h.groups, ha_settings(h.settings_data()), h.address)
                       for h in hosts if DB_GROUPS & set(h.groups)],
                      [h.name for h in hosts if "backup" in h.groups])
    audited: dict[bool, str] = {}
    for host in hosts:
        data = host.settings_data()
        app = app_settings(data)
        monitoring_settings(data)  # read on the monitoring hosts, and for database firewalls
        pgbadger_settings(data)
        if "backup" in host.groups:
            backup_settings(data)
        if DB_GROUPS & set(host.groups):
            pg = postgres_settings(data)
            replica_settings(data)
            backup_settings(data)
            maintenance_settings(data)
            pgbouncer_settings(data, app, pg)  # includes the pool sizing guard
            exporter_settings(data, pg)
            readiness_settings(data)
            audited.setdefault(pg.pgaudit, host.name)
            if len(audited) > 1:
                # The extension replicates: a promoted replica without the library would fail
                # every DDL in the application database.
                raise SettingsError("postgres_pgaudit", pg.pgaudit, "must be the same on the "
                                    f"primary and its replicas ({audited[not pg.pgaudit]} has "
                                    f"{not pg.pgaudit})")
            if pg.memory_mb:
                # RAM is declared, so overrides can be checked against it now; otherwise the
                # deploy checks them against the host's facts before its first operation.
                server_config(replace(pg, version=pg.version or 13), pg.memory_mb * 1024, 1)
        if (DB_GROUPS | {"backup"}) & set(host.groups):
            upgrade_settings(data)
