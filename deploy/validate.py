"""Validate every concern's settings for every host, before any host is contacted."""

from __future__ import annotations

from collections.abc import Iterable

from deploy.hostdata import InventoryHost
from deploy.settings import Data, app_settings, postgres_settings

DB_GROUPS = {"postgres_primary", "postgres_replicas"}


def validate_hosts(hosts: Iterable[InventoryHost]) -> None:
    for host in hosts:
        data = Data(host.data)
        app_settings(data)
        if DB_GROUPS & set(host.groups):
            postgres_settings(data)
