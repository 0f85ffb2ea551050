"""One database connection that reconnects by itself and never lets a query hang a scrape.

Two limits guard every statement:
* the server-side ``statement_timeout`` (set once per session through the startup ``options``),
  which cancels a slow query and leaves the connection usable;
* a client-side watchdog a little longer than that, for a server that does not answer at all
  (stopped, frozen, network gone): it shuts the socket down under the blocked read, psycopg
  raises, the connection is dropped and the next scrape connects again. statement_timeout alone
  cannot help there, and libpq has no read timeout.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

log = logging.getLogger(__name__)

APPLICATION_NAME = "bgdb-exporter"
# How much longer than statement_timeout the watchdog waits before declaring the server hung:
# the server's timer starts when it begins the statement, the watchdog's when the client sends
# it, and on a busy host parsing, planning and the error's way back took more than 1 s (CI runs
# with two test workers: a live server's statement timeout arrived after a 1 s grace).
WATCHDOG_GRACE_SECONDS = 2.0


class DatabaseHung(psycopg.OperationalError):
    """The server did not answer within the client-side deadline; the connection was dropped."""


def _shutdown_socket(fd: int) -> None:
    # A duplicate of the descriptor lets us shut the socket down (which wakes the blocked
    # select/read in psycopg) without closing the number libpq still owns.
    try:
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()


class Watchdog:
    """Shuts a socket down when a guarded block outlives its deadline.

    The thread is woken only when it sleeps without a deadline (between scrapes): while it
    sleeps until an earlier block's deadline, a new block with a later one just moves the
    deadline on, and the thread re-reads it when it wakes. That spares a thread switch per
    statement (about 20 per scrape), which on a busy host costs more than the statement.
    """

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._deadline: float | None = None
        self._seconds = 0.0
        self._stopped = False
        self._idle = False  # the thread waits with no deadline: a new block must wake it
        self._wake_at = 0.0  # the deadline the thread sleeps until otherwise
        self.fired = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def guard(self, fd: int, seconds: float) -> Iterator[None]:
        with self._cond:
            self._fd, self._seconds, self.fired = fd, seconds, False
            self._deadline = time.monotonic() + seconds
            if self._idle or self._deadline < self._wake_at:
                self._cond.notify()
        try:
            yield
        finally:
            # Cleared under the lock: once this returns the watchdog cannot touch the fd, which
            # the caller may close and the OS may reuse.
            with self._cond:
                self._fd, self._deadline = None, None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._deadline is None or self._fd is None:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._wake_at = self._deadline
                    self._cond.wait(remaining)
                    continue
                log.warning("no answer within %.1f s: dropping the connection", self._seconds)
                _shutdown_socket(self._fd)
                self.fired = True
                self._deadline = None


class Database:
    """A lazily opened autocommit connection with per-statement time limits."""

    def __init__(
        self,
        dsn: str,
        *,
        statement_timeout_seconds: float,
        name: str = "postgres",
        session_settings: bool = True,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.statement_timeout_seconds = statement_timeout_seconds
        # PgBouncer's admin console refuses the startup `options` parameter.
        self.session_settings = session_settings
        self.application_name = application_name
        self._conn: psycopg.Connection[Any] | None = None
        self._watchdog = Watchdog(f"bgdb-exporter-watchdog-{name}")
        self.connects = 0

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "autocommit": True,
            # PostgreSQL: every query is prepared on first use and, with force_generic_plan
            # below, planned once per connection. Planning over dozens of daily partitions costs
            # more than running these queries; runtime pruning still skips the partitions that
            # now() rules out. PgBouncer's admin console knows no prepared statements.
            "prepare_threshold": 0 if self.session_settings else None,
            "row_factory": dict_row,
            # libpq (and psycopg >= 3.2) treat anything under 2 s as 2 s.
            "connect_timeout": max(2, math.ceil(self.statement_timeout_seconds)),
        }
        if self.session_settings:
            ms = max(1, round(self.statement_timeout_seconds * 1000))
            kwargs["application_name"] = self.application_name
            # lock_timeout below statement_timeout: a catalog lookup stuck behind an ACCESS
            # EXCLUSIVE lock (partition drop, REINDEX) fails fast with a clear message.
            ours = (
                f"-c statement_timeout={ms} -c lock_timeout={max(1, ms // 2)} "
                "-c default_transaction_read_only=on -c idle_in_transaction_session_timeout=60000"
                " -c plan_cache_mode=force_generic_plan"
            )
            # Keep options the DSN brings (e.g. "-c role=..."); ours come last and win.
            theirs = conninfo_to_dict(self.dsn).get("options")
            kwargs["options"] = f"{theirs} {ours}" if theirs else ours
        return kwargs

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed and not self._conn.broken

    def _connection(self) -> tuple[psycopg.Connection[Any], bool]:
        """The open connection, and whether it was opened just now."""
        if self._conn is not None and self.connected:
            return self._conn, False
        self.close_connection()
        self._conn = psycopg.Connection.connect(self.dsn, **self._connect_kwargs())
        self.connects += 1
        return self._conn, True

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of one statement as dicts. A stale connection (terminated by the server while
        idle) is replaced once and the statement retried; any other error propagates."""
        for attempt in (1, 2):
            conn, fresh = self._connection()
            try:
                return self._run(conn, sql, params)
            except DatabaseHung:
                raise
            except psycopg.OperationalError:
                if fresh or attempt == 2 or self.connected:
                    raise
                log.info("%s connection lost; reconnecting", self.name)
        raise AssertionError("unreachable")

    def _run(
        self, conn: psycopg.Connection[Any], sql: str, params: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        wait = self.statement_timeout_seconds + WATCHDOG_GRACE_SECONDS
        try:
            with self._watchdog.guard(conn.pgconn.socket, wait):
                cur = conn.execute(sql, params) if params else conn.execute(sql)
                return list(cur.fetchall()) if cur.description else []
        except psycopg.Error as exc:
            if self._watchdog.fired:
                self.close_connection()
                raise DatabaseHung(f"{self.name}: no answer within {wait:.1f} s") from exc
            if not self.connected:
                self.close_connection()
            raise

    def close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self.close_connection()
        self._watchdog.stop()
