"""High availability: etcd and Patroni on every database host, keepalived moving the agents'
address to the leader. The files come from deploy/ha_config.py; the server settings from the
same functions as the single-host deploy (deploy/postgres.py), handed to Patroni.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, deploy, operation
from pyinfra.facts.server import Hostname
from pyinfra.operations import files, server, systemd

from deploy import aptbatch, backup, certs, ha_config, hostfacts, postgres, secrets, uploads
from deploy.ha_config import Member
from deploy.render import render
from deploy.settings import AppSettings, Data, HaSettings, PostgresSettings, backup_settings

# python3-etcd by name: patroni depends on "python3-etcd | python3-consul | ...", and on Debian
# 13 apt settles it with consul, so Patroni 4.0 there finds no etcd module ("Available
# implementations: consul, kubernetes") and never starts. Debian 12's install already has it.
PACKAGES = ["etcd-server", "etcd-client", "patroni", "python3-etcd", "keepalived", "curl",
            "iproute2"]
SYSCTL = "/etc/sysctl.d/61-bgdb-ha.conf"
REST_CURLRC = f"{ha_config.PATRONI_DIR}/rest.curlrc"  # the REST login for the deploy's curl


def passwords() -> dict[str, str]:
    return {name: secrets.password(name) for name in
            (ha_config.REPLICATOR, ha_config.REWIND, ha_config.REST_USER)}


def rest_url(ha: HaSettings, address: str, path: str) -> str:
    return f"http://{address}:{ha.rest_port}{path}"


class RestGet(FactBase[Any]):
    """A Patroni REST endpoint's JSON and status: {"status": code, "body": ...}."""

    def command(self, url: str) -> str:
        return (f"out=$(curl -s --max-time 3 -w '\\n%{{http_code}}' {shlex.quote(url)}) "
                "|| out=\"$(printf '\\n000')\"; printf '%s\\n' \"$out\"")

    def process(self, output: list[str]) -> Any:
        code = int(output[-1]) if output and output[-1].isdigit() else 0
        try:
            body = json.loads("\n".join(output[:-1])) if output[:-1] else None
        except ValueError:
            body = None
        return {"status": code, "body": body}


def is_leader(ha: HaSettings, address: str) -> bool:
    return bool(host.get_fact(RestGet, url=rest_url(ha, address, "/primary"))["status"] == 200)


def dcs_differs(current: Any, wanted: Mapping[str, object]) -> dict[str, object]:
    """The part of `wanted` that etcd's cluster-wide configuration does not hold yet."""
    current = current if isinstance(current, dict) else {}
    patch: dict[str, object] = {}
    for key, value in wanted.items():
        if isinstance(value, dict):
            sub = dcs_differs(current.get(key), value)
            if sub:
                patch[key] = sub
        elif str(current.get(key)) != str(value):
            patch[key] = value
    return patch


@operation()
def sync_dcs(ha: HaSettings, address: str, wanted: dict[str, object]):
    """PATCH /config with what differs (on the leader): Patroni applies it on every member."""
    current = host.get_fact(RestGet, url=rest_url(ha, address, "/config"))
    patch = dcs_differs(current["body"], wanted)
    if current["status"] == 200 and patch:
        body = shlex.quote(json.dumps(patch, sort_keys=True))
        yield (f"curl -sf --max-time 10 -K {REST_CURLRC} -X PATCH -H 'Content-Type: "
               f"application/json' -d {body} {rest_url(ha, address, '/config')} >/dev/null")


def restart_command(ha: HaSettings, address: str) -> str:
    """Patroni restarts the member's PostgreSQL if it still needs it (and answers when done)."""
    body = shlex.quote(json.dumps({"restart_pending": True}))
    return (f"curl -sf --max-time 120 -K {REST_CURLRC} -X POST -d {body} "
            f"{rest_url(ha, address, '/restart')}")


def settle_command(ha: HaSettings, address: str) -> str:
    """After a configuration change: Patroni applies it in its next loop (SIGHUP, or the DCS
    watch), so pending_restart shows up to two loops later; restart if it does."""
    url = shlex.quote(rest_url(ha, address, "/patroni"))
    return (f"for i in $(seq {2 * ha.loop_wait + 3}); do curl -s --max-time 2 {url} "
            f"| grep -Eq '\"pending_restart\": ?true' && exec {restart_command(ha, address)}; "
            "sleep 1; done; exit 0")


@operation()
def restart_pending(ha: HaSettings, address: str):
    """A member whose settings need a restart (Patroni's pending_restart) is restarted through
    Patroni, which keeps the cluster's view of it right."""
    state = host.get_fact(RestGet, url=rest_url(ha, address, "/patroni"))["body"] or {}
    if state.get("pending_restart"):
        yield restart_command(ha, address)


def wait_command(urls: Sequence[str], what: str, timeout: int = 180) -> str:
    """Poll until one of `urls` answers 200 (Patroni: /primary, /health)."""
    checks = " || ".join(f"curl -sf -o /dev/null --max-time 2 {shlex.quote(u)}" for u in urls)
    return (f"for i in $(seq {timeout}); do if {checks}; then exit 0; fi; sleep 1; done; "
            f"echo {shlex.quote('timed out waiting for ' + what)} >&2; exit 1")


def etcd_health_wait(address: str, timeout: int = 30) -> str:
    """After this member's etcd restarts: until it is healthy again (its metrics listener's
    /health answers 200 once it has a raft leader, 503 until then), so a restart never takes a
    second member down while one is away."""
    return wait_command([f"http://{address}:{ha_config.ETCD_METRICS_PORT}/health"],
                        f"etcd on {address} to be healthy", timeout)


def members_of(hosts: Sequence[Any]) -> list[Member]:
    return [Member(h.name, str(h.data.get("service_address"))) for h in hosts]


@deploy("Configure the HA cluster (etcd, Patroni, keepalived)")
def install_ha(pg: PostgresSettings, app: AppSettings, ha: HaSettings, members: list[Member],
               is_bootstrap: bool) -> Callable[[], bool]:
    """Returns a check that says, when operations run, whether this host leads now."""
    me = next(m for m in members if m.name == host.name)
    etcd_cert = _etcd_files(ha, me, members)
    postgres.install_packages(pg)  # PostgreSQL, psycopg, the postgres user's hardening
    aptbatch.install(name="Install etcd, Patroni and keepalived", packages=PACKAGES,
                     no_recommends=True)
    systemd.service(name="Keep etcd running and enabled", service="etcd", running=True,
                    enabled=True)

    facts = host.get_fact(hostfacts.Facts)
    conf = hostfacts.tuned_config(pg, facts)
    # Every member archives when it leads (archive_mode = on: a standby does not), to the
    # backup host's repository (deploy/backup.py).
    conf.update(backup.archive_config(backup_settings(Data(host.data.dict())), conf))
    cert = postgres.server_certificate(pg, me.address)
    for name, text, mode in (("bgdb-server.crt", cert.cert_pem, "0644"),
                             ("bgdb-server.key", cert.key_pem, "0600"),
                             ("bgdb-ca.crt", cert.ca_pem, "0644")):
        uploads.put(name=f"Upload {name} for PostgreSQL", src=StringIO(text),
                    dest=f"{pg.conf_dir}/{name}", user="postgres", group="postgres", mode=mode,
                    create_remote_dir=True)
    uploads.put(name="Publish the CA certificate for clients", src=StringIO(cert.ca_pem),
                dest=postgres.CA_PATH, mode="0644", create_remote_dir=True)
    # Debian's postgresql@ unit and pg_lsclusters see the cluster; only Patroni starts it.
    uploads.put(name="Leave starting the cluster to Patroni (start.conf)",
                src=StringIO("manual\n"), dest=f"{pg.conf_dir}/start.conf", user="postgres",
                group="postgres", mode="0644")
    uploads.put(name="Write the base configuration Patroni includes",
                src=StringIO(ha_config.base_conf(pg)), dest=ha_config.base_conf_path(pg),
                user="postgres", group="postgres", mode="0644")
    uploads.put(name="Upload Patroni's etcd client certificate", src=StringIO(etcd_cert.cert_pem),
                dest=f"{ha_config.PATRONI_DIR}/etcd-client.crt", user="postgres",
                group="postgres", mode="0644")
    uploads.put(name="Upload Patroni's etcd client key", src=StringIO(etcd_cert.key_pem),
                dest=f"{ha_config.PATRONI_DIR}/etcd-client.key", user="postgres",
                group="postgres", mode="0600")
    pw = passwords()
    hba = render("pg_hba.conf.j2", pg=pg, app=app, app_roles=postgres.hba_roles(app),
                 replica_addresses=[m.address for m in members])
    dcs = ha_config.dcs_config(ha, conf)
    config = ha_config.patroni_config(pg, ha, me, members, ha_config.local_parameters(pg, conf),
                                      ha_config.hba_lines(hba, members), dcs, pw)
    # Before this run changes anything: whether a settings change may leave a restart pending.
    was_running = host.get_fact(hostfacts.UnitProperty, unit=pg.unit,
                                prop="ActiveState") == "active"
    dcs_now = host.get_fact(RestGet, url=rest_url(ha, me.address, "/config")) if was_running \
        else {"status": 0}
    dcs_stale = dcs_now["status"] == 200 and bool(dcs_differs(dcs_now["body"], dcs))
    uploads.put(name="Install Patroni's callback (etcd's leadership off the leader)",
                src=StringIO(ha_config.etcd_leader_away_script(ha, me)),
                dest=ha_config.ETCD_LEADER_AWAY, mode="0755", create_remote_dir=True)
    patroni_yml = uploads.put(name="Write Patroni's configuration (passwords: 0600)",
                              src=StringIO(ha_config.dump(config)),
                              dest=ha_config.config_path(pg), user="postgres", group="postgres",
                              mode="0600")
    uploads.put(name="Write the REST login for the deploy's requests",
                src=StringIO(f'user = "{ha_config.REST_USER}:{pw[ha_config.REST_USER]}"\n'),
                dest=REST_CURLRC, user="root", group="root", mode="0600")
    dropin = uploads.put(name="Restart Patroni after a crash (Debian's unit does not)",
                         src=StringIO("[Service]\nRestart=on-failure\nRestartSec=2s\n"),
                         dest="/etc/systemd/system/patroni@.service.d/bgdb-restart.conf",
                         mode="0644", create_remote_dir=True)
    server.shell(name="Load Patroni's unit drop-in", commands=["systemctl daemon-reload"],
                 _if=lambda: dropin.did_change() or host.get_fact(
                     hostfacts.UnitProperty, unit=pg.unit, prop="Restart") != "on-failure")
    postgres._kernel_settings()
    nonlocal_bind = uploads.put(name="Let PgBouncer listen on the agents' address before it "
                                "arrives (net.ipv4.ip_nonlocal_bind)",
                                src=StringIO("net.ipv4.ip_nonlocal_bind = 1\n"), dest=SYSCTL,
                                mode="0644")
    server.shell(name="Load net.ipv4.ip_nonlocal_bind", commands=[f"sysctl -q -p {SYSCTL}"],
                 _if=lambda: nonlocal_bind.did_change() or host.get_fact(
                     _Sysctl, key="net.ipv4.ip_nonlocal_bind") != "1")
    if pg.firewall:
        postgres._firewall(pg, [m.address for m in members],
                           ha_ports=[ha.rest_port, ha.etcd_client_port, ha.etcd_peer_port,
                                     ha_config.ETCD_METRICS_PORT])

    # The bootstrap host (postgres_primary) initializes the cluster; the others clone from it.
    leader_urls = [rest_url(ha, m.address, "/primary") for m in members]
    if is_bootstrap:
        systemd.service(name="Start Patroni on the bootstrap host", service=pg.unit,
                        running=True, enabled=True)
    server.shell(name="Wait for the cluster's leader",
                 commands=[wait_command(leader_urls, "a Patroni leader")],
                 _if=lambda: not any(host.get_fact(RestGet, url=u)["status"] == 200
                                     for u in leader_urls))
    running = systemd.service(name="Keep Patroni running and enabled", service=pg.unit,
                              running=True, enabled=True)
    server.shell(name="Reload Patroni for its changed configuration",
                 commands=[f"systemctl reload {pg.unit}"],
                 _if=lambda: patroni_yml.did_change() and not running.did_change())
    health = rest_url(ha, me.address, "/health")
    server.shell(name="Wait until this member's PostgreSQL runs",
                 commands=[wait_command([health], f"{me.name}'s PostgreSQL")],
                 _if=lambda: host.get_fact(RestGet, url=health)["status"] != 200)

    def leads() -> bool:
        return is_leader(ha, me.address)

    sync_dcs(name="Keep the cluster-wide settings in etcd (on the leader)", ha=ha,
             address=me.address, wanted=dcs, _if=leads)

    def changed() -> bool:  # a running member's settings changed in this run
        return was_running and (patroni_yml.did_change() or dcs_stale)

    # One member at a time, the replicas first: the leader's restart is the agents' pause.
    for role, is_role in (("a replica", lambda: not leads()), ("the leader", leads)):
        restart_pending(name=f"Restart PostgreSQL through Patroni if a setting needs it "
                        f"({role})", ha=ha, address=me.address, _serial=True,
                        _if=[is_role, lambda: not changed()])
        server.shell(name=f"Restart PostgreSQL through Patroni once it flags the changed "
                     f"settings ({role})", commands=[settle_command(ha, me.address)],
                     _serial=True, _if=[is_role, changed])
    _keepalived(ha, me, members)
    return leads


def _etcd_files(ha: HaSettings, me: Member, members: Sequence[Member]) -> certs.ServerCert:
    """etcd's user, certificate and environment before its package: the package starts it.
    Returns the member's etcd certificate (Patroni's etcd client certificate too)."""
    server.group(name="Create the etcd group", group="etcd", system=True)
    server.user(name="Create the etcd user", user="etcd", group="etcd", system=True,
                home="/var/lib/etcd", shell="/usr/sbin/nologin", create_home=False)
    files.directory(name=f"Create {ha_config.ETCD_DIR}", path=ha_config.ETCD_DIR, user="root",
                    group="etcd", mode="0750")
    hostname = host.get_fact(Hostname) or host.name
    cert = certs.server_cert(f"{host.name}-etcd", [hostname, host.name, "localhost"],
                             [me.address, "127.0.0.1"], client=True)
    crt = uploads.put(name="Upload etcd's certificate", src=StringIO(cert.cert_pem),
                      dest=f"{ha_config.ETCD_DIR}/etcd.crt", user="root", group="etcd",
                      mode="0644")
    key = uploads.put(name="Upload etcd's key", src=StringIO(cert.key_pem),
                      dest=f"{ha_config.ETCD_DIR}/etcd.key", user="root", group="etcd",
                      mode="0640")
    uploads.put(name="Publish the CA certificate for etcd", src=StringIO(cert.ca_pem),
                dest=ha_config.CA, mode="0644", create_remote_dir=True)
    env = uploads.put(name="Write etcd's environment", src=StringIO(
        ha_config.etcd_env(ha, me, members)), dest=f"{ha_config.ETCD_DIR}/etcd.env",
        user="root", group="etcd", mode="0640")
    unit = uploads.put(name="Point etcd's unit at the bundle's environment",
                       src=StringIO("[Service]\nEnvironmentFile=\n"
                                    f"EnvironmentFile={ha_config.ETCD_DIR}/etcd.env\n"
                                    "Restart=on-failure\nRestartSec=2s\n"),
                       dest="/etc/systemd/system/etcd.service.d/bgdb.conf", mode="0644",
                       create_remote_dir=True)
    # One member at a time, each healthy again before the next: all at once would leave etcd
    # without quorum, and Patroni's leader would demote itself.
    server.shell(name="Restart etcd for its changed configuration (one member at a time)",
                 commands=["systemctl daemon-reload", "systemctl restart etcd",
                           etcd_health_wait(me.address)], _serial=True,
                 _if=lambda: (unit.did_change() or env.did_change() or crt.did_change()
                              or key.did_change())
                 and host.get_fact(hostfacts.UnitProperty, unit="etcd",
                                   prop="ActiveState") == "active")
    return cert


def _keepalived(ha: HaSettings, me: Member, members: Sequence[Member]) -> None:
    uploads.put(name="Install keepalived's address check",
                src=StringIO(ha_config.vip_check_script()), dest=ha_config.VIP_CHECK,
                mode="0755", create_remote_dir=True)
    conf = uploads.put(name="Configure keepalived (the agents' address on the leader)",
                       src=StringIO(ha_config.keepalived_conf(ha, me, members)),
                       dest="/etc/keepalived/keepalived.conf", mode="0640",
                       create_remote_dir=True)
    running = systemd.service(name="Keep keepalived running and enabled", service="keepalived",
                              running=True, enabled=True)
    systemd.service(name="Reload keepalived for its changed configuration",
                    service="keepalived", reloaded=True,
                    _if=lambda: conf.did_change() and not running.did_change())


class _Sysctl(FactBase[str]):
    def command(self, key: str) -> str:
        return f"sysctl -n {key} 2>/dev/null || true"

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else ""

