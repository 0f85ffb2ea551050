"""What keeps a load test on the user's own hosts harmless: it loads only a database host the
inventory names, asks before loading a primary that holds other agents' data, and removes every
row of its own when it ends (or, if it could not, on the next run or `bgdb loadtest --cleanup`).

A run's rows are recognised by their agent ids, `bgdb-loadtest-<run>-<nnnnn>`: the run registers
its agents with `metadata.bgdb_loadtest = {run, until}` (`until`: when the run is over at the
latest), and everything else it writes names one of those agents. Runs of the earlier benchmark
(`bench-<nnnnn>`, type 'bench', name 'bench agent', no run id) are recognised by that exact
signature and removed as leftovers too.

Cleanup deletes rather than leaving rows to age out: an operator who ran a load test against the
production primary expects the agents table, the health overview, the pending help requests and
the inbox queues to look as they did before (a 20 s run at 50 agents leaves tens of thousands of
rows, and 30 days of them in `bgdb status`'s heartbeat and error figures otherwise). Every delete
is an index probe per agent id (`agent_id = ANY(...)` on the (agent_id, ...) indexes; the
time-series tables also get a lower bound on `timestamp`, so only the partitions since the run
began are visited), so its cost is the run's own rows, not the tables' size. The agents go last:
as long as one is left, the next run finds the rest.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from deploy.hostdata import InventoryHost
from deploy.settings import Data, ha_settings

PREFIX = "bgdb-loadtest-"
AGENT_TYPE = "bgdb-loadtest"
AGENT_NAME = "load test agent"
LEGACY_RUN = "legacy"  # the earlier benchmark's agents: bench-00000 ...
LEGACY_ID = re.compile(r"bench-\d{5}")
CONFIRM_FLAG = "--confirm-existing-data"
# Client clocks stamp heartbeats and events: look a day back from the run's first agent.
CLOCK_MARGIN = timedelta(days=1)


class Refused(Exception):
    """The load test will not run: one line saying why and what to do."""


def new_run_id() -> str:
    return secrets.token_hex(4)


def agent_prefix(run: str) -> str:
    return f"{PREFIX}{run}-"


def agent_id(run: str, index: int) -> str:
    return f"{agent_prefix(run)}{index:05d}"


def run_of(agent: str) -> str | None:
    """The run an agent id belongs to, LEGACY_RUN for the earlier benchmark's, else None."""
    if agent.startswith(PREFIX):
        run, sep, _ = agent[len(PREFIX):].rpartition("-")
        return run if sep and run else None
    return LEGACY_RUN if LEGACY_ID.fullmatch(agent) else None


# --- target: a database host of the inventory ---

def check_target(dsn: str, hosts: Sequence[InventoryHost]) -> str:
    """The DSN, pinned to the inventory's address (hostaddr) of the one database host it names;
    Refused if it names none, several, a socket, a service file or anything else."""
    db = [h for h in hosts if {"postgres_primary", "postgres_replicas"} & set(h.groups)]
    known = ", ".join(f"{h.name} ({h.address})" for h in db) or "none"
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise Refused(f"load test target {dsn!r}: not a libpq DSN ({exc})") from None
    if "service" in params:
        raise Refused("load test target: name the host, not a service file entry "
                      f"(service={params['service']}); database hosts are {known}")
    named = [h for key in ("host", "hostaddr") for h in str(params.get(key) or "").split(",")
             if h]
    if not named:
        raise Refused(f"load test target {dsn!r} names no host: it must be a database host of "
                      f"the inventory ({known})")
    if set(named) <= _agents_addresses(db) and len(set(named)) == 1:
        # HA mode: the agents' one address, on whichever member leads
        params["hostaddr"] = named[0]
        return make_conninfo(**params)  # type: ignore[arg-type]
    matches = {h.name: h for n in named for h in db if n in (h.name, h.address)}
    unknown = [n for n in named if not any(n in (h.name, h.address) for h in db)]
    if unknown:
        raise Refused(f"load test target {unknown[0]!r} is not a database host of the "
                      f"inventory: database hosts are {known}")
    if len(matches) != 1:
        raise Refused(f"load test target names {len(matches)} hosts "
                      f"({', '.join(sorted(matches))}): name one database host")
    (host,) = matches.values()
    # hostaddr pins the connection to the inventory's address: no DNS answer and no $PGHOSTADDR
    # can send the load elsewhere (verify-full still checks the certificate against `host`).
    params["hostaddr"] = host.address
    params.setdefault("host", host.address)
    return make_conninfo(**params)  # type: ignore[arg-type]


def _agents_addresses(db: Sequence[InventoryHost]) -> set[str]:
    """HA mode's floating address for the agents (postgres_ha_vip) of the database hosts."""
    found = (ha_settings(Data(h.data)) for h in db)
    return {ha.vip for ha in found if ha.enabled and ha.vip}


# --- confirmation: a primary that holds other agents ---

def data_refusal(where: str, foreign: int, example: str | None, confirmed: bool) -> str | None:
    """None when the load test may run; else why not and how to say yes."""
    if foreign == 0 or confirmed:
        return None
    return (f"{where} already holds data: {foreign} agent(s) that are not the load test's "
            f"(e.g. {example!r}). The load test writes next to them at full speed (and removes "
            f"only its own rows afterwards); pass {CONFIRM_FLAG} to load it anyway")


# --- runs found in the database ---

@dataclass(frozen=True)
class Run:
    run: str
    agents: tuple[str, ...]
    since: datetime  # its first agent's created_at
    until: datetime | None  # when it is over at the latest; None: the earlier benchmark's

    def live(self, now: datetime) -> bool:
        return self.until is not None and now < self.until


def runs_from_rows(rows: Iterable[tuple[str, datetime, str | None]]) -> list[Run]:
    """Group (agent_id, created_at, until ISO text) rows into runs."""
    grouped: dict[str, list[tuple[str, datetime, datetime | None]]] = {}
    for agent, created, until in rows:
        run = run_of(agent)
        if run is None:
            continue
        end = datetime.fromisoformat(until) if until else None
        grouped.setdefault(run, []).append((agent, created, end))
    out = []
    for run, members in sorted(grouped.items()):
        ends = [e for _, _, e in members if e is not None]
        out.append(Run(run, tuple(sorted(a for a, _, _ in members)),
                       min(c for _, c, _ in members),
                       None if run == LEGACY_RUN or not ends else max(ends)))
    return out


# (Statements without parameters: a % is LIKE's, not a placeholder.)
LEGACY_SQL = ("(agent_id ~ '^bench-[0-9]{5}$' AND type = 'bench'"
              " AND coalesce(name, '') = 'bench agent')")
RUN_AGENTS_SQL = f"""
SELECT agent_id, coalesce(created_at, started_at, now()), metadata -> 'bgdb_loadtest' ->> 'until'
FROM agents
WHERE agent_id LIKE 'bgdb-loadtest-%' OR {LEGACY_SQL}
"""
FOREIGN_SQL = f"""
SELECT count(*), min(agent_id) FROM agents
WHERE agent_id NOT LIKE 'bgdb-loadtest-%' AND NOT {LEGACY_SQL}
"""


def survey(conn: psycopg.Connection[Any]) -> tuple[int, str | None, list[Run]]:
    """Other agents (count, one of them) and the load-test runs found on the target."""
    row = conn.execute(FOREIGN_SQL).fetchone()
    runs = runs_from_rows(conn.execute(RUN_AGENTS_SQL).fetchall())
    return (int(row[0]) if row else 0), (row[1] if row else None), runs


# --- cleanup ---

# (table, statement): the run's rows by agent id; $1 = the ids, $2 = the lower time bound.
# Help responses go with their requests (ON DELETE CASCADE), heartbeats and metrics would go with
# the agents too, but deleting them first, bounded in time, spares the cascade's per-partition
# probes any work.
CLEANUP: tuple[tuple[str, str], ...] = (
    # user_id too: the foreign key sets requesting_agent_id NULL if a request slipped in after
    # this delete and before the agents' (both columns are indexed).
    ("help_requests", "DELETE FROM help_requests"
                      " WHERE requesting_agent_id = ANY(%(ids)s) OR user_id = ANY(%(ids)s)"),
    ("agent_communications", "DELETE FROM agent_communications"
                             " WHERE from_agent = ANY(%(ids)s) OR to_agent = ANY(%(ids)s)"),
    ("llm_conversations", "DELETE FROM llm_conversations WHERE agent_id = ANY(%(ids)s)"),
    ("system_events", "DELETE FROM system_events"
                      " WHERE agent_id = ANY(%(ids)s) AND timestamp >= %(since)s"),
    ("performance_metrics", "DELETE FROM performance_metrics"
                            " WHERE agent_id = ANY(%(ids)s) AND timestamp >= %(since)s"),
    ("agent_heartbeats", "DELETE FROM agent_heartbeats"
                         " WHERE agent_id = ANY(%(ids)s) AND timestamp >= %(since)s"),
    ("agents", "DELETE FROM agents WHERE agent_id = ANY(%(ids)s)"),
)
# Rows that would still be there: the help requests still pending, messages still waiting, and
# the agents themselves.
REMAINING_SQL = """
SELECT (SELECT count(*) FROM agents WHERE agent_id = ANY(%(ids)s))
     + (SELECT count(*) FROM help_requests
        WHERE requesting_agent_id = ANY(%(ids)s) OR user_id = ANY(%(ids)s))
     + (SELECT count(*) FROM agent_communications
        WHERE from_agent = ANY(%(ids)s) OR to_agent = ANY(%(ids)s))
"""


@dataclass
class Removed:
    run: str
    rows: dict[str, int]
    seconds: float

    def line(self) -> str:
        total = sum(self.rows.values())
        parts = ", ".join(f"{n:,} {table}" for table, n in self.rows.items() if n)
        return (f"load test run {self.run}: removed {total:,} rows ({parts or 'none'}) "
                f"in {self.seconds:.1f} s")


def cleanup(conn: psycopg.Connection[Any], run: Run, attempts: int = 3) -> Removed:
    """Delete the run's rows, table by table (each its own transaction: short locks), agents
    last; again if a statement still in flight when the run stopped added a row meanwhile."""
    t0 = time.monotonic()
    params = {"ids": list(run.agents), "since": run.since - CLOCK_MARGIN}
    rows: dict[str, int] = {table: 0 for table, _ in CLEANUP}
    for _ in range(attempts):
        for table, sql in CLEANUP:
            with conn.transaction():
                rows[table] += conn.execute(sql, params).rowcount
        left = conn.execute(REMAINING_SQL, params).fetchone()
        if not left or not left[0]:
            break
    return Removed(run.run, rows, time.monotonic() - t0)


def now_utc() -> datetime:
    return datetime.now(UTC)
