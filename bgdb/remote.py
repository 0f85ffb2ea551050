"""A database host reached over SSH (testinfra + paramiko): its settings, and SQL run on it as
the postgres OS user. Used by the readiness checks and the operator CLI."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import paramiko
import testinfra

from deploy import hostfacts
from deploy.hostdata import InventoryHost
from deploy.nodelay import client_nodelay
from deploy.settings import AppSettings, Data, PostgresSettings, app_settings, postgres_settings

# A tab quoted for any sh: with sudo, testinfra runs commands through /bin/sh (dash), where
# bash's $'\t' is the literal `$\t` and every row would come back as one column.
TAB = shlex.quote("\t")


@dataclass
class Target:
    inv: InventoryHost

    @property
    def name(self) -> str:
        return self.inv.name

    @cached_property
    def host(self) -> Any:
        d = self.inv.data
        user, port = str(d.get("ssh_user", "root")), int(d.get("ssh_port", 22))
        host = testinfra.get_host(f"paramiko://{user}@{self.inv.address}:{port}",
                                  sudo=bool(d.get("_sudo")))
        # testinfra's paramiko backend only warns on unknown host keys and ignores
        # UserKnownHostsFile; connect ourselves with the inventory's known hosts, rejecting others.
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if d.get("ssh_known_hosts_file"):
            client.load_host_keys(str(d["ssh_known_hosts_file"]))
        else:
            client.load_system_host_keys()
        client.connect(self.inv.address, port=port, username=user,
                       key_filename=str(d["ssh_key"]) if d.get("ssh_key") else None, timeout=15)
        client_nodelay(client)  # else ~45 ms of Nagle per command (deploy/nodelay.py)
        host.backend.__dict__["client"] = client
        return host

    @cached_property
    def facts(self) -> hostfacts.HostFacts:
        """RAM, CPUs, distribution: the same command and parser as the deploy's fact."""
        out = self.host.run(hostfacts.COMMAND)
        return hostfacts.parse(out.stdout.splitlines())

    @cached_property
    def pg(self) -> PostgresSettings:
        """The settings the deploy used, the PostgreSQL major decided the same way."""
        return hostfacts.resolve(postgres_settings(Data(self.inv.data)), self.facts, self.name)

    @cached_property
    def app(self) -> AppSettings:
        return app_settings(Data(self.inv.data))

    def sql(self, query: str, database: str | None = None) -> list[list[str]]:
        """Rows of `query` run as the postgres superuser over the local socket (tab-separated)."""
        db = database or self.app.database
        cmd = (f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -F {TAB} "
               f"-p {self.pg.port}"
               f" -d {shlex.quote(db)} -c {shlex.quote(query)}")
        out = self.host.run(cmd)
        if out.rc != 0:
            raise AssertionError(f"{self.name}: SQL failed ({query!r}): {out.stderr.strip()}")
        return [line.split("\t") for line in out.stdout.splitlines()]

    def value(self, query: str, database: str | None = None) -> str:
        rows = self.sql(query, database)
        return rows[0][0] if rows and rows[0] else ""

    @cached_property
    def _settings(self) -> dict[str, str]:
        # Read once: the readiness checks ask ~35 settings per host, each a psql round trip.
        return {row[0]: "\t".join(row[1:]) for row in
                self.sql("SELECT name, current_setting(name) FROM pg_settings")}

    def setting(self, name: str) -> str:
        """As current_setting(name) in the application database, this Target's first answer."""
        found = self._settings.get(name.lower())
        return found if found is not None else self.value(f"SELECT current_setting('{name}')")

    def journal(self, unit: str, lines: int = 30) -> str:
        return self.host.run(f"journalctl -u {shlex.quote(unit)} -n {lines} --no-pager").stdout
