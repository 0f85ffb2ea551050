"""Which failures are transient, and whether the failed statement may have taken effect.

A failure is one of three kinds:

  NOT_APPLIED  the statement certainly did not change anything: it was never sent (no connection,
               pool exhausted, PgBouncer refused or timed out the client before a server was
               assigned), or the server rolled it back and said so (serialization failure,
               deadlock, too many connections, database starting up, a write refused by a
               read-only server). Retrying is always safe.
  UNKNOWN      the connection broke after the statement was sent (connection lost, server
               terminated by pg_terminate_backend or a shutdown, PgBouncer lost its server).
               The statement may or may not have committed: a read is retried, a write is
               retried only after its outcome is established (see postgresql_adapter).
  PERMANENT    anything else (constraint violation, syntax error, statement timeout, ...):
               raised to the caller at once.

A write refused because the server is read-only (SQLSTATE 25006) is, for a client of the agents'
one address, a failover under way: the address still reaches the old leader, already restarted
as a replica, for the second until it moves. It is retried for the whole time budget rather than
a bounded number of attempts (is_read_only), and on a new connection (the old one may keep
reaching the demoted server); a client pointed at a replica by mistake gets the server's error
once the budget is spent.

Backoff between attempts is "full jitter" exponential: a random delay in
[0, min(max_delay, base_delay * 2**(attempt-1))], bounded in count and by a time budget.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg_pool import PoolTimeout


class Failure(enum.Enum):
    NOT_APPLIED = "not applied"
    UNKNOWN = "outcome unknown"
    PERMANENT = "permanent"


# The server rolled back (or never started) the statement, and said so.
ROLLED_BACK_SQLSTATES = frozenset({
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "53300",  # too_many_connections (at connect time)
    "57P03",  # cannot_connect_now (starting up, recovery)
    "08001",  # sqlclient_unable_to_establish_sqlconnection
    "08004",  # sqlserver_rejected_establishment_of_sqlconnection
})
# The server is read-only (a standby, or default_transaction_read_only): nothing ran.
READ_ONLY_SQLSTATES = frozenset({
    "25006",  # read_only_sql_transaction: "cannot execute INSERT in a read-only transaction"
})
# The session ended under the statement: it may have committed (e.g. terminated while waiting
# for a synchronous standby after the local commit).
CONNECTION_SQLSTATES = frozenset({
    "57P01",  # admin_shutdown: pg_terminate_backend, smart/fast shutdown
    "57P02",  # crash_shutdown: another backend crashed
    "57P05",  # idle_session_timeout
})
# PgBouncer reports its own refusals as 08P01 protocol_violation; these messages mean the
# client's query never reached a PostgreSQL server.
PGBOUNCER_NOT_SENT_MESSAGES = (
    "no more connections allowed",
    "query_wait_timeout",
    "pgbouncer cannot connect to server",
    "server login has been failing",
    "database is paused",
    "pgbouncer is shutting down",
)


def sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) if isinstance(exc, psycopg.Error) else None


def classify(exc: BaseException, *, sent: bool) -> Failure:
    """The kind of `exc`, raised before (`sent=False`) or after the statement was sent."""
    if isinstance(exc, PoolTimeout):
        return Failure.NOT_APPLIED  # no connection was ever handed out
    if not isinstance(exc, psycopg.Error):
        return Failure.PERMANENT
    state = sqlstate(exc)
    if state in ROLLED_BACK_SQLSTATES or state in READ_ONLY_SQLSTATES:
        return Failure.NOT_APPLIED
    message = str(exc).lower()
    if state == "08P01" and any(m in message for m in PGBOUNCER_NOT_SENT_MESSAGES):
        return Failure.NOT_APPLIED
    lost = (state in CONNECTION_SQLSTATES
            or (state is not None and state.startswith("08"))
            # libpq-level failures (refused, reset, "server closed the connection
            # unexpectedly", SSL errors) carry no SQLSTATE.
            or (state is None and isinstance(exc, psycopg.OperationalError)))
    if lost:
        return Failure.UNKNOWN if sent else Failure.NOT_APPLIED
    return Failure.PERMANENT


def is_read_only(exc: BaseException) -> bool:
    """True when the server refused a write because it is read-only (see the module's doc)."""
    return sqlstate(exc) in READ_ONLY_SQLSTATES


def is_connection_failure(exc: BaseException) -> bool:
    """True when the connection that raised `exc` is unusable (worth checking the pool)."""
    state = sqlstate(exc)
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state in CONNECTION_SQLSTATES or state.startswith("08")


@dataclass(frozen=True)
class Backoff:
    """Bounded exponential backoff with full jitter."""

    base_delay: float = 0.05
    max_delay: float = 2.0
    max_attempts: int = 6

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to sleep after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(attempt - 1, 30))
        return rand() * ceiling

    def should_retry(self, attempt: int, remaining: float) -> bool:
        """Another attempt after `attempt` failures, with `remaining` seconds of budget left?"""
        return attempt < self.max_attempts and remaining > 0
