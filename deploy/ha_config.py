"""Pure builders of the HA layer's files: etcd's environment, Patroni's YAML (as JSON, which is
YAML), keepalived's configuration. deploy/ha.py uploads them; the unit tests render them.

Patroni owns postgresql.conf, pg_hba.conf and pg_ident.conf: every server setting the
single-host deploy computes (tuning, TLS, logging, pgaudit, pg_stat_statements, ...) goes into
its `postgresql.parameters`, pg_hba.conf's lines into `postgresql.pg_hba`, so Patroni and the
deploy never write the same file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deploy.render import render
from deploy.settings import HaSettings, PostgresSettings

PATRONI_DIR = "/etc/patroni"
ETCD_DIR = "/etc/bgdb/etcd"
ETCD_DATA_DIR = "/var/lib/etcd/bgdb"
ETCD_METRICS_PORT = 2381
CA = "/etc/bgdb/ca.crt"
REPLICATOR = "bgdb_replicator"
REWIND = "bgdb_rewind"
REST_USER = "bgdb_patroni"
PGBOUNCER_IDENT = "bgdb_pgbouncer  postgres  pgbouncer"
VIP_CHECK = "/usr/local/lib/bgdb/vip-check"  # keepalived's check of a floating address
ETCD_LEADER_AWAY = "/usr/local/lib/bgdb/etcd-leader-away"  # Patroni's role change callback

# Parameters Patroni takes from the cluster-wide configuration in etcd only (its command-line
# options): a local value would be ignored, so the deploy keeps them in etcd (bootstrap.dcs,
# then PATCH /config), from the leader's own computation.
DCS_PARAMETERS = ("max_connections", "max_locks_per_transaction", "max_worker_processes",
                  "max_prepared_transactions", "wal_level", "track_commit_timestamp",
                  "max_wal_senders", "max_replication_slots", "wal_log_hints", "wal_keep_size")
# Patroni sets these from its own keys (postgresql.listen, synchronous_mode).
PATRONI_OWNED = ("listen_addresses", "port", "synchronous_standby_names", "hba_file",
                 "ident_file", "data_directory", "config_file")


@dataclass(frozen=True)
class Member:
    name: str  # the inventory name: Patroni's member name and etcd's
    address: str


def unit(pg: PostgresSettings) -> str:
    return f"patroni@{pg.version}-{pg.cluster}"


def config_path(pg: PostgresSettings) -> str:
    return f"{PATRONI_DIR}/{pg.version}-{pg.cluster}.yml"


def base_conf_path(pg: PostgresSettings) -> str:
    return f"{pg.conf_dir}/bgdb-base.conf"


def slot_name(member: str) -> str:
    """Patroni's replication slot (and application_name) for a member."""
    return "".join(c if c.isalnum() else "_" for c in member.lower())


def etcd_endpoints(ha: HaSettings, me: Member, members: Sequence[Member]) -> list[str]:
    """The etcd members Patroni on `me` talks to: the others, never its own. etcd serves reads
    without quorum, so a member cut off from the rest still answers, with the view it had
    when the cut came: Patroni (before 4.0.6) then found its own, expired, leader key there and
    promoted itself again while isolated, on a timeline number the new leader also took, and
    the two histories could never be joined (the member never streamed again). A member that
    reaches no other etcd member cannot lead anyway; while one other answers, the local member
    still counts for its quorum."""
    return [f"{m.address}:{ha.etcd_client_port}" for m in members if m.name != me.name]


def etcd_env(ha: HaSettings, me: Member, members: Sequence[Member]) -> str:
    """etcd's environment (ETCD_* variables): TLS with client certificates on both ports."""
    peers = ",".join(f"{m.name}=https://{m.address}:{ha.etcd_peer_port}" for m in members)
    lines = {
        "ETCD_NAME": me.name,
        "ETCD_DATA_DIR": ETCD_DATA_DIR,
        "ETCD_LISTEN_PEER_URLS": f"https://{me.address}:{ha.etcd_peer_port}",
        "ETCD_LISTEN_CLIENT_URLS": f"https://{me.address}:{ha.etcd_client_port},"
                                   f"https://127.0.0.1:{ha.etcd_client_port}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"https://{me.address}:{ha.etcd_client_port}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"https://{me.address}:{ha.etcd_peer_port}",
        "ETCD_INITIAL_CLUSTER": peers,
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER_TOKEN": f"bgdb-{ha.scope}",
        "ETCD_CERT_FILE": f"{ETCD_DIR}/etcd.crt",
        "ETCD_KEY_FILE": f"{ETCD_DIR}/etcd.key",
        "ETCD_TRUSTED_CA_FILE": CA,
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_CERT_FILE": f"{ETCD_DIR}/etcd.crt",
        "ETCD_PEER_KEY_FILE": f"{ETCD_DIR}/etcd.key",
        "ETCD_PEER_TRUSTED_CA_FILE": CA,
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
        # Shared 2-CPU machines: etcd's 100/1000 ms defaults elect needlessly under load.
        "ETCD_HEARTBEAT_INTERVAL": "250",
        "ETCD_ELECTION_TIMEOUT": "2500",
        # A member cut off keeps calling elections, raising its term; without pre-vote (etcd
        # 3.4's default, 3.5 has it on) its return makes the leader step down, etcd answers no
        # one for seconds, and Patroni's new leader demotes itself ("DCS is not accessible"): a
        # second write outage, seen on a Debian 12 lab. With it, the member rejoins quietly.
        "ETCD_PRE_VOTE": "true",
        "ETCD_ENABLE_V2": "false",
        # /metrics and /health only, without client certificates: Prometheus's etcd job
        "ETCD_LISTEN_METRICS_URLS": f"http://{me.address}:{ETCD_METRICS_PORT}",
    }
    return "# Managed by background-agents-db (deploy/ha.py)\n" + "".join(
        f"{k}={v}\n" for k, v in lines.items())


def dcs_config(ha: HaSettings, conf: Mapping[str, str]) -> dict[str, object]:
    """The cluster-wide configuration the deploy keeps in etcd (bootstrap.dcs, PATCH /config)."""
    return {
        "ttl": ha.ttl,
        "loop_wait": ha.loop_wait,
        "retry_timeout": ha.retry_timeout,
        "maximum_lag_on_failover": ha.maximum_lag_on_failover,
        # A crashed leader is failed over at once rather than restarted in place (crash
        # recovery can take longer than an election; the standby has every commit).
        "primary_start_timeout": 0,
        # A leader that demotes itself (etcd lost) stops PostgreSQL, whose shutdown waits for
        # walsenders to reach standbys it may no longer reach (wal_sender_timeout, 60 s): after
        # this long Patroni kills it, so the old leader is soon free to rejoin.
        "primary_stop_timeout": 10,
        "synchronous_mode": ha.synchronous_mode,
        "synchronous_mode_strict": ha.synchronous_mode_strict,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {k: conf[k] for k in DCS_PARAMETERS if k in conf},
        },
    }


def local_parameters(pg: PostgresSettings, conf: Mapping[str, str]) -> dict[str, str]:
    """postgresql.parameters: the deploy's server configuration plus the TLS files and the
    Debian socket directory, minus what Patroni sets itself."""
    params = {k: v for k, v in conf.items() if k not in PATRONI_OWNED}
    params.update({
        "ssl_cert_file": f"{pg.conf_dir}/bgdb-server.crt",
        "ssl_key_file": f"{pg.conf_dir}/bgdb-server.key",
        "ssl_ca_file": f"{pg.conf_dir}/bgdb-ca.crt",
        "unix_socket_directories": "/var/run/postgresql",
        "cluster_name": f"{pg.version}/{pg.cluster}",
    })
    return params


def hba_lines(rendered: str, members: Sequence[Member]) -> list[str]:
    """pg_hba.conf's lines for Patroni: the deploy's rendered file without comments, plus the
    rewind role's access to the other members (pg_rewind reads the new leader's files)."""
    lines = [" ".join(line.split()) for line in rendered.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    lines += [f"hostssl postgres {REWIND} {m.address}/32 scram-sha-256" for m in members]
    # Patroni's own replication connection to the local server (use_unix_socket_repl): it
    # reads a standby's timeline there, and without it cannot tell that a demoted old leader
    # diverged and needs pg_rewind (it then stays a standby that never streams).
    lines.append(f"local replication {REPLICATOR} scram-sha-256")
    return lines


def patroni_config(pg: PostgresSettings, ha: HaSettings, me: Member, members: Sequence[Member],
                   params: Mapping[str, str], hba: Sequence[str], dcs: Mapping[str, object],
                   passwords: Mapping[str, str]) -> dict[str, object]:
    ssl = {"sslmode": "verify-full", "sslrootcert": CA}
    return {
        "scope": ha.scope,
        "namespace": "/service/",
        "name": me.name,
        "restapi": {
            "listen": f"{me.address}:{ha.rest_port}",
            "connect_address": f"{me.address}:{ha.rest_port}",
            # Unsafe endpoints (restart, switchover, PATCH /config) need this login.
            "authentication": {"username": REST_USER, "password": passwords[REST_USER]},
        },
        "ctl": {"cacert": CA},
        "etcd3": {
            "hosts": etcd_endpoints(ha, me, members),
            # exactly those hosts: no discovery of the cluster's members (which would add the
            # local one back)
            "use_proxies": True,
            "protocol": "https",
            "cacert": CA,
            "cert": f"{PATRONI_DIR}/etcd-client.crt",
            "key": f"{PATRONI_DIR}/etcd-client.key",
        },
        "bootstrap": {
            "dcs": dcs,
            "initdb": [{"encoding": "UTF8"}, {"locale": pg.locale}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"{me.address},localhost:{pg.port}",
            "connect_address": f"{me.address}:{pg.port}",
            "data_dir": pg.data_dir,
            "bin_dir": f"/usr/lib/postgresql/{pg.version}/bin",
            "config_dir": pg.conf_dir,
            "custom_conf": base_conf_path(pg),
            "pgpass": f"/var/lib/postgresql/{pg.version}-{pg.cluster}.pgpass",
            "use_unix_socket": True,
            "use_unix_socket_repl": True,
            # A rewind that fails leaves a data directory that cannot follow the new leader:
            # Patroni then clones the member afresh instead of waiting for an operator.
            "remove_data_directory_on_rewind_failure": True,
            "authentication": {
                "superuser": {"username": "postgres"},  # local socket, peer
                "replication": {"username": REPLICATOR, "password": passwords[REPLICATOR],
                                **ssl},
                "rewind": {"username": REWIND, "password": passwords[REWIND], **ssl},
            },
            "parameters": dict(params),
            "callbacks": {"on_start": ETCD_LEADER_AWAY, "on_role_change": ETCD_LEADER_AWAY},
            "pg_hba": list(hba),
            "pg_ident": [PGBOUNCER_IDENT],
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False,
                 "nosync": False},
    }


def dump(config: Mapping[str, object]) -> str:
    """YAML for Patroni: JSON is YAML, and sorted keys keep the file stable between deploys."""
    return "# Managed by background-agents-db (deploy/ha.py): change settings, not this file\n" \
        + json.dumps(config, indent=2, sort_keys=True) + "\n"


def router_id(scope: str) -> int:
    """A VRRP router id (1-255) from the scope, stable across deploys."""
    return int(hashlib.sha256(scope.encode()).hexdigest(), 16) % 255 + 1


def keepalived_conf(ha: HaSettings, me: Member, members: Sequence[Member]) -> str:
    """The agents' address on the leader (and the read-only one on a replica) with Debian's
    keepalived: templates/keepalived.conf.j2 says how."""
    return render("keepalived.conf.j2", ha=ha, me=me, vip_check=VIP_CHECK,
                  peers=[m for m in members if m.name != me.name],
                  router=router_id(ha.scope), router_ro=router_id(f"{ha.scope}-ro"))


def etcd_leader_away_script(ha: HaSettings, me: Member) -> str:
    return render("etcd-leader-away.j2", ca=CA, cert=f"{PATRONI_DIR}/etcd-client.crt",
                  key=f"{PATRONI_DIR}/etcd-client.key",
                  local=f"https://{me.address}:{ha.etcd_client_port}")


def vip_check_script() -> str:
    return render("vip-check.j2")


def base_conf(pg: PostgresSettings) -> str:
    return render("bgdb-base.conf.j2", path=config_path(pg), locale=pg.locale)
