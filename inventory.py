"""pyinfra inventory: `pyinfra inventory.py deploy.py`. Hosts and groups only; see deploy/hostdata.

Targets the sandbox lab by default; set BGDB_HOSTS_FILE=hosts.json for real hosts (README).
Every host's settings are validated here, before pyinfra connects to any host.
"""

from __future__ import annotations

import sys as _sys

from deploy.hostdata import GROUPS as _GROUPS
from deploy.hostdata import load_inventory as _load_inventory
from deploy.settings import SettingsError as _SettingsError
from deploy.validate import validate_hosts as _validate_hosts

try:
    _hosts = _load_inventory()
    _validate_hosts(_hosts)
except _SettingsError as _exc:
    print(_exc, file=_sys.stderr)
    _sys.exit(2)


def _group(name: str) -> list[tuple[str, dict[str, object]]]:
    return [(h.name, h.data) for h in _hosts if name in h.groups]


postgres_primary = _group("postgres_primary")
postgres_replicas = _group("postgres_replicas")
backup = _group("backup")
monitoring = _group("monitoring")
agents = _group("agents")
others = [(h.name, h.data) for h in _hosts if not set(h.groups) & set(_GROUPS)]
