"""Failure classification (retry safe / outcome unknown / permanent) and bounded backoff."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout

from background_agents.retry import (
    Backoff,
    Failure,
    classify,
    is_connection_failure,
    is_read_only,
)

NOT_APPLIED, UNKNOWN, PERMANENT = Failure.NOT_APPLIED, Failure.UNKNOWN, Failure.PERMANENT


@pytest.mark.parametrize(("exc", "before", "after"), [
    # never reached a server
    (PoolTimeout("couldn't get a connection after 30.00 sec"), NOT_APPLIED, NOT_APPLIED),
    # the server rolled the statement back and said so
    (errors.SerializationFailure("could not serialize access"), NOT_APPLIED, NOT_APPLIED),
    (errors.DeadlockDetected("deadlock detected"), NOT_APPLIED, NOT_APPLIED),
    (errors.TooManyConnections("sorry, too many clients already"), NOT_APPLIED, NOT_APPLIED),
    (errors.CannotConnectNow("the database system is starting up"), NOT_APPLIED, NOT_APPLIED),
    # a read-only server (the old leader restarted as a replica) refused the write
    (errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
     NOT_APPLIED, NOT_APPLIED),
    # PgBouncer refusing or timing out a client before any server saw the query
    (errors.ProtocolViolation("no more connections allowed (max_client_conn)"),
     NOT_APPLIED, NOT_APPLIED),
    (errors.ProtocolViolation("query_wait_timeout"), NOT_APPLIED, NOT_APPLIED),
    # the session ended under the statement: unknown once it was sent
    (errors.AdminShutdown("terminating connection due to administrator command"),
     NOT_APPLIED, UNKNOWN),
    (errors.CrashShutdown("terminating connection because of crash of another server process"),
     NOT_APPLIED, UNKNOWN),
    (errors.ProtocolViolation("server conn crashed?"), NOT_APPLIED, UNKNOWN),
    (errors.ConnectionFailure("connection failure"), NOT_APPLIED, UNKNOWN),
    (psycopg.OperationalError("consuming input failed: server closed the connection "
                              "unexpectedly"), NOT_APPLIED, UNKNOWN),
    # real errors: never retried
    (errors.UniqueViolation("duplicate key value"), PERMANENT, PERMANENT),
    (errors.NotNullViolation("null value"), PERMANENT, PERMANENT),
    (errors.QueryCanceled("canceling statement due to statement timeout"), PERMANENT, PERMANENT),
    (errors.UndefinedTable("relation does not exist"), PERMANENT, PERMANENT),
    (errors.InsufficientPrivilege("permission denied"), PERMANENT, PERMANENT),
    (ValueError("not a database error"), PERMANENT, PERMANENT),
])
def test_classify(exc: BaseException, before: Failure, after: Failure) -> None:
    assert classify(exc, sent=False) is before
    assert classify(exc, sent=True) is after


def test_connection_failures_are_recognised() -> None:
    assert is_connection_failure(errors.AdminShutdown("x"))
    assert is_connection_failure(psycopg.OperationalError("server closed the connection"))
    assert is_connection_failure(errors.ProtocolViolation("server conn crashed?"))
    assert not is_connection_failure(errors.SerializationFailure("x"))
    assert not is_connection_failure(errors.UniqueViolation("x"))


def test_read_only_refusals_are_recognised() -> None:
    assert is_read_only(errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only "
                                                      "transaction"))
    assert not is_read_only(errors.SerializationFailure("x"))
    assert not is_read_only(psycopg.OperationalError("server closed the connection"))


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    b = Backoff(base_delay=0.05, max_delay=1.0, max_attempts=10)
    ceilings = [b.delay(n, rand=lambda: 1.0) for n in range(1, 9)]
    assert ceilings == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert b.delay(1000, rand=lambda: 1.0) == 1.0  # no overflow on huge attempt numbers


def test_backoff_jitter_stays_within_bounds() -> None:
    b = Backoff(base_delay=0.05, max_delay=1.0)
    assert b.delay(3, rand=lambda: 0.0) == 0.0
    assert all(0.0 <= b.delay(n) <= 1.0 for n in range(1, 50))


def test_retries_are_bounded_in_count_and_time() -> None:
    b = Backoff(max_attempts=3)
    assert b.should_retry(1, remaining=5.0)
    assert b.should_retry(2, remaining=5.0)
    assert not b.should_retry(3, remaining=5.0)
    assert not b.should_retry(1, remaining=0.0)
