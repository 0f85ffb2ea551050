"""The one inventory: hosts, their groups and their data, for pyinfra and for the checks alike.

Hosts come from a JSON hosts file: $BGDB_HOSTS_FILE for real hosts, else the sandbox lab's
inventory ($BGDB_LAB, default `sbx`). Data is merged the way pyinfra does it: group_data/all.py,
then each of the host's groups' files, then the host's own data, then $BGDB_EXTRA_DATA (JSON, for
one-off runs and tests).
"""

from __future__ import annotations

import json
import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.settings_schema import Data, SettingsError, check_known

REPO = Path(__file__).resolve().parent.parent
GROUP_DATA = REPO / "group_data"
GROUPS = ("postgres_primary", "postgres_replicas", "backup", "monitoring", "agents")
SANDBOX_LABS = Path(os.environ.get("BGDB_SANDBOX_ROOT", "/var/lib/bgdb-sandbox")) / "labs"


@dataclass(frozen=True)
class InventoryHost:
    name: str
    address: str
    groups: tuple[str, ...]
    data: dict[str, Any] = field(default_factory=dict)  # merged: all < groups < host < extra
    origins: dict[str, str] = field(default_factory=dict)  # key -> where its value came from

    def settings_data(self) -> Data:
        """The host's data for deploy/settings.py, errors naming where a value came from."""
        return Data(self.data, origins=self.origins)


def hosts_file() -> Path:
    if os.environ.get("BGDB_HOSTS_FILE"):
        return Path(os.environ["BGDB_HOSTS_FILE"])
    return SANDBOX_LABS / os.environ.get("BGDB_LAB", "sbx") / "inventory.json"


def is_sandbox() -> bool:
    return not os.environ.get("BGDB_HOSTS_FILE")


def load_group_data(group: str) -> dict[str, Any]:
    path = GROUP_DATA / f"{group}.py"
    if not path.exists():
        return {}
    return {k: v for k, v in runpy.run_path(str(path)).items()
            if not k.startswith("_") and not callable(v) and not hasattr(v, "__file__")}


def load_inventory() -> list[InventoryHost]:
    path = hosts_file()
    if not path.exists():
        hint = ("run `make sandbox` (or `python -m sandbox up`) first" if is_sandbox()
                else "check BGDB_HOSTS_FILE")
        raise SettingsError("hosts file", str(path), f"does not exist: {hint}")
    try:
        doc = json.loads(path.read_text())
        raw_hosts = doc["hosts"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SettingsError("hosts file", str(path), f"not a hosts file ({exc})") from None
    ssh = doc.get("ssh", {})
    if is_sandbox():
        ssh = {"user": "root", "key": doc["ssh_key"], "known_hosts": doc["known_hosts"]}
    extra = _extra_data()
    check_known(extra, "BGDB_EXTRA_DATA")
    common = _checked_group_data("all")
    origins = dict.fromkeys(common, "group_data/all.py")
    if is_sandbox():
        common.update(_sandbox_data(raw_hosts))
        origins.update(dict.fromkeys(_sandbox_data(raw_hosts), "the sandbox lab's inventory"))
    hosts = []
    # The repository's place follows the inventory: the one host of group `backup`, if any
    # (deploy/validate.py refuses more than one before any host is touched).
    backup_hosts = [h["address"] for h in raw_hosts if "backup" in h.get("groups", ())]
    if len(backup_hosts) == 1:
        common["backup_repo_host"] = backup_hosts[0]
    for h in raw_hosts:
        groups = tuple(h.get("groups", ()))
        for g in groups:
            if g not in GROUPS:
                raise SettingsError(f"groups of {h['name']}", g, f"expected one of {GROUPS}")
        data, where = dict(common), dict(origins)
        for g in groups:
            group_data = _checked_group_data(g)
            data.update(group_data)
            where.update(dict.fromkeys(group_data, f"group_data/{g}.py"))
        data.update(_ssh_data(ssh, h))
        own = h.get("data", {})
        source = f"{path} host {h['name']}"
        if not isinstance(own, dict):
            raise SettingsError(f"data of {h['name']}", own, "expected an object of key: value",
                                str(path))
        check_known(own, source)
        data.update(own)
        where.update(dict.fromkeys(own, source))
        data.update(extra)
        where.update(dict.fromkeys(extra, "BGDB_EXTRA_DATA"))
        data["service_address"] = h["address"]
        hosts.append(InventoryHost(h["name"], h["address"], groups, data, where))
    return hosts


def _checked_group_data(group: str) -> dict[str, Any]:
    data = load_group_data(group)
    check_known(data, f"group_data/{group}.py")
    return data


def _ssh_data(ssh: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"ssh_hostname": host["address"]}
    if ssh.get("user"):
        data["ssh_user"] = ssh["user"]
        if ssh["user"] != "root":
            data["_sudo"] = True
    if ssh.get("key"):
        data["ssh_key"] = ssh["key"]
    if ssh.get("port"):
        data["ssh_port"] = int(ssh["port"])
    if ssh.get("known_hosts"):
        data["ssh_known_hosts_file"] = ssh["known_hosts"]
        data["ssh_strict_host_key_checking"] = "yes"
    return data


def _sandbox_data(raw_hosts: list[dict[str, Any]]) -> dict[str, Any]:
    """The lab's network: the controller (the bridge address) and the second host are the
    allowed clients, a third stays outside. (No memory key: hosts are tuned for the RAM they
    report, as real hosts are.)"""
    controller = "10.231.0.1/32"
    nodes = [h["address"] for h in raw_hosts if not h.get("groups")]
    return {
        "postgres_allowed_cidrs": [controller] + [f"{a}/32" for a in nodes[:1]],
        "postgres_admin_cidrs": [controller],
        "postgres_monitoring_cidrs": [controller],
        "monitoring_allowed_cidrs": [controller],
    }


def _extra_data() -> dict[str, Any]:
    raw = os.environ.get("BGDB_EXTRA_DATA", "")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SettingsError("BGDB_EXTRA_DATA", raw, f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SettingsError("BGDB_EXTRA_DATA", raw, "expected a JSON object")
    return value
