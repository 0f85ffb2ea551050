"""HA mode: the local Patroni's state (GET /patroni on its REST API) as metrics.

Patroni's own /metrics is not scraped: Debian 12's Patroni 3.0.2 writes ``None`` as a value on a
replica (``patroni_postgres_timeline{scope="bgdb"} None``), which Prometheus rejects for the
whole target. Its JSON status is stable from Patroni 2.0 to 4.0 and answers without a login;
the exporter reads it at each scrape (1 s timeout, standard library only) and publishes what
the alerts need: Patroni answers, this member leads, it still hears from etcd, a restart is
pending. A Patroni that does not answer gives ``bgdb_patroni_up 0`` and nothing else from it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from exporters.exposition import Family

LEADER_ROLES = ("master", "primary", "standby_leader")  # Patroni 2.x/3.x say master, 4.x primary


def fetch(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """GET /patroni as a dict; None when Patroni does not answer or answers nonsense (a
    replica that is not running answers 503 with the same JSON: that is an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - a local http URL
            body = r.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (OSError, ValueError):
        return None
    try:
        state = json.loads(body)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def _gauge(name: str, help_: str, value: float, labels: tuple[tuple[str, str], ...] = ()
           ) -> Family:
    fam = Family(name, "gauge", help_)
    fam.add(float(value), labels)
    return fam


def families(state: dict[str, Any] | None, now: float) -> list[Family]:
    """The metrics of one answer (None: Patroni did not answer)."""
    out = [_gauge("bgdb_patroni_up", "1 if the local Patroni answered GET /patroni.",
                  state is not None)]
    if state is None:
        return out
    role = str(state.get("role", ""))
    pg_state = str(state.get("state", ""))
    version = str((state.get("patroni") or {}).get("version", ""))
    out += [
        _gauge("bgdb_patroni_info", "Patroni's version, this member's role and PostgreSQL "
               "state as Patroni reports them (value 1).", 1,
               (("role", role), ("state", pg_state), ("version", version))),
        _gauge("bgdb_patroni_leader", "1 if Patroni runs this member as the cluster's leader.",
               role in LEADER_ROLES),
        _gauge("bgdb_patroni_running", "1 if Patroni reports its PostgreSQL as running.",
               pg_state == "running"),
        _gauge("bgdb_patroni_pending_restart", "1 if a changed setting waits for a restart "
               "(Patroni's pending_restart).", bool(state.get("pending_restart"))),
        _gauge("bgdb_patroni_sync_standby", "1 if this member is the synchronous standby.",
               bool(state.get("sync_standby"))),
    ]
    if isinstance(state.get("timeline"), int):
        out.append(_gauge("bgdb_patroni_timeline", "PostgreSQL's timeline as Patroni reports "
                          "it.", state["timeline"]))
    seen = state.get("dcs_last_seen")
    if isinstance(seen, (int, float)) and seen > 0:
        out.append(_gauge("bgdb_patroni_dcs_last_seen_age_seconds", "Seconds since Patroni "
                          "last reached etcd (it renews every loop_wait).", max(0.0, now - seen)))
    return out
