"""PostgreSQLAdapter: the agents' async database client (psycopg 3 + psycopg_pool).

Seed code keeps working unchanged:

    db = PostgreSQLAdapter()          # settings from POSTGRESQL_* (background_agents.config)
    # no connect step needed: the pool opens on first use (await db.connect() opens it at once,
    # and so does `async with PostgreSQLAdapter() as db:`)
    await db.execute_query(
        "INSERT INTO performance_metrics (agent_id, metric_name, value) VALUES ($1, $2, $3)",
        agent_id, "cpu_usage", 25.5)
    rows = await db.fetch("SELECT * FROM agents WHERE state = $1", "running")   # list of dicts

`$n` placeholders go to the server as they are (psycopg's raw cursors, server-side binding); a
dict argument is sent as jsonb. Connections are made for PgBouncer's transaction pooling:
autocommit, no server-side prepared statements (prepare_threshold=None), no session state, no
startup `options`.

Transient failures are retried (at most config.max_attempts tries within config.timeout
seconds, jittered exponential backoff; see background_agents.retry), but a write is never
re-sent while it may already have committed:

  * reads (background_agents.sqltext decides from the text) and statements the caller marks
    `idempotent=True` are retried after any transient failure;
  * any other statement runs as a guarded write, in two round trips: first
    `BEGIN; SELECT pg_current_xact_id()` (the transaction id, received before the write is
    sent), then `<statement>; COMMIT` (pipelined). If the connection breaks before the id was
    received, the write was never sent: retry. If it breaks after, the adapter asks the server,
    on a new connection, `pg_xact_status(xid)` - PostgreSQL's own answer to "did my commit
    happen?" - waiting while the old transaction is still 'in progress': 'committed' means
    done (not re-sent), 'aborted' means retry. If the server cannot tell within the timeout,
    WriteOutcomeUnknown is raised; the write is never duplicated.

The agent API (background_agents.agent_api) needs neither: every row it writes carries a key the
client chose before the first attempt (an id taken from the table's own identity sequence, plus
its timestamp for the partitioned tables), inserted with ON CONFLICT DO NOTHING, so it marks its
statements idempotent and a retry lands on the same key - one round trip, no duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncRawCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from background_agents import retry, sqltext
from background_agents.config import AdapterConfig

log = logging.getLogger("background_agents.db")

Row = dict[str, Any]
Connection = psycopg.AsyncConnection[DictRow]
Recover = Callable[[], Awaitable[list[Row]]]

# Identity sequences are read once per table; only these tables get client-chosen ids.
ID_TABLES = frozenset({"agent_heartbeats", "performance_metrics", "system_events",
                       "agent_communications", "help_requests", "help_responses",
                       "llm_conversations"})


class AdapterError(Exception):
    """Base class of the adapter's own errors."""


class NotConnectedError(AdapterError):
    """The adapter was used after close() (before connect() it connects by itself)."""


class DatabaseUnavailable(AdapterError):
    """The first connection could not be made within the timeout; the message says where to
    (host, port, database, user) and why."""


class WriteOutcomeUnknown(AdapterError):
    """The connection broke after a write was sent and the server could not say, within the
    timeout, whether it committed. It was not retried (no duplicate); check before re-sending."""


class ResultLost(AdapterError):
    """The write committed, but the connection broke before its RETURNING rows arrived."""


@dataclass
class AdapterStats:
    """Counters, for logs and the benchmark."""

    statements: int = 0
    retries: int = 0
    connection_failures: int = 0
    committed_after_loss: int = 0  # guarded writes found committed by pg_xact_status
    aborted_after_loss: int = 0  # guarded writes found aborted, then retried
    stale_connections: int = 0  # dead pooled connections found before sending a retry
    failures_by_kind: dict[str, int] = field(default_factory=dict)


def adapt_arg(arg: Any) -> Any:
    """An argument as psycopg should send it: a dict becomes jsonb (the seed's JSONB columns),
    a list of dicts a jsonb[]; anything else is left to psycopg's own adaptation."""
    if isinstance(arg, dict):
        return Jsonb(arg)
    if isinstance(arg, list) and any(isinstance(a, dict) for a in arg):
        return [Jsonb(a) if isinstance(a, dict) else a for a in arg]
    return arg


def adapt_args(args: Sequence[Any]) -> list[Any]:
    return [adapt_arg(a) for a in args]


async def _drop_if_read_only(conn: Connection, exc: psycopg.Error) -> None:
    """Close a connection whose server refused a write as read-only (a demoted leader still
    reached through the address): the retry's new connection goes where the address leads now.
    The pool discards a closed connection when it is put back."""
    if retry.is_read_only(exc):
        await conn.close()


class PostgreSQLAdapter:
    """An async connection pool with `$n` queries and safe retries (see the module docstring)."""

    def __init__(self, config: AdapterConfig | None = None, *,
                 id_block_size: int = 64, pool_kwargs: dict[str, Any] | None = None) -> None:
        self.config = config if config is not None else AdapterConfig.from_env()
        self.backoff = retry.Backoff(self.config.retry_base_delay, self.config.retry_max_delay,
                                     self.config.max_attempts)
        self.stats = AdapterStats()
        self._pool_kwargs = pool_kwargs or {}
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._closed = False
        self._opening = asyncio.Lock()
        self._checking = False
        self._id_block = max(1, id_block_size)
        self._ids: dict[str, list[int]] = {}
        self._id_locks: dict[str, asyncio.Lock] = {}
        self._sequences: dict[str, str] = {}

    # --- lifecycle ---

    async def connect(self) -> None:
        """Open the pool and wait until its first connection works (raises if it cannot within
        config.timeout)."""
        if self._pool is not None:
            return
        self._closed = False
        cfg = self.config
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            cfg.conninfo(),
            connection_class=psycopg.AsyncConnection[DictRow],
            kwargs={"autocommit": True, "prepare_threshold": None,
                    "cursor_factory": AsyncRawCursor, "row_factory": dict_row},
            min_size=cfg.pool_min_size,
            max_size=cfg.pool_size,
            timeout=cfg.timeout,
            name=cfg.application_name,
            open=False,
            **self._pool_kwargs,
        )
        try:
            await pool.open(wait=cfg.pool_min_size > 0, timeout=cfg.timeout)
        except retry.PoolTimeout:
            await pool.close()
            raise DatabaseUnavailable(await self._why_unreachable()) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        log.info("connected to %s", cfg.describe())

    initialize = connect  # the seed's name for it

    async def _why_unreachable(self) -> str:
        """The message of DatabaseUnavailable: where, and libpq's reason (one more attempt, as
        the pool only says it timed out)."""
        cfg = self.config
        where = (f"cannot connect to PostgreSQL at {cfg.host}:{cfg.port} (database "
                 f"{cfg.database}, user {cfg.user}, sslmode {cfg.ssl_mode}) within "
                 f"{cfg.timeout:g} s")
        try:
            conn = await psycopg.AsyncConnection.connect(
                cfg.conninfo(), connect_timeout=max(1, min(5, int(cfg.timeout))))
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            return f"{where}: {reason}" if reason else where
        await conn.close()
        return f"{where} (a connection made afterwards worked: retry)"

    async def _open(self) -> AsyncConnectionPool[Connection]:
        """The pool, opened on first use: the seed constructs the adapter and queries at once."""
        if self._pool is None:
            if self._closed:
                raise NotConnectedError("PostgreSQLAdapter was closed: await connect() to reopen")
            async with self._opening:
                if self._pool is None:
                    await self.connect()
        return self.pool

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> PostgreSQLAdapter:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pool(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise NotConnectedError("PostgreSQLAdapter is not connected: await connect() (or run "
                                    "a query) first")
        return self._pool

    # --- queries ---

    async def execute_query(self, query: str, *args: Any,
                            idempotent: bool | None = None) -> list[Row]:
        """Run one statement with `$n` arguments; its rows as dicts ([] if it returns none).

        idempotent: None decides from the text (reads are retried freely, writes are guarded);
        True retries after any transient failure (for statements that are safe to repeat, e.g.
        an INSERT ... ON CONFLICT DO NOTHING on a key you chose); False always guards."""
        rows, _ = await self._run(query, args, idempotent)
        return rows

    async def fetch(self, query: str, *args: Any, idempotent: bool | None = None) -> list[Row]:
        return await self.execute_query(query, *args, idempotent=idempotent)

    async def fetchrow(self, query: str, *args: Any,
                       idempotent: bool | None = None) -> Row | None:
        rows = await self.execute_query(query, *args, idempotent=idempotent)
        return rows[0] if rows else None

    async def fetchval(self, query: str, *args: Any, idempotent: bool | None = None) -> Any:
        row = await self.fetchrow(query, *args, idempotent=idempotent)
        return next(iter(row.values())) if row else None

    async def execute(self, query: str, *args: Any, idempotent: bool | None = None) -> int:
        """Run one statement; the number of rows it affected (-1 if unknown)."""
        _, rowcount = await self._run(query, args, idempotent)
        return rowcount

    async def execute_claim(self, query: str, *args: Any, recover: Recover) -> list[Row]:
        """A guarded write whose rows can be found again: if it committed but its reply was
        lost, `recover()` is awaited for the rows (e.g. by the claim token it wrote)."""
        stmt = self._prepare(query, args)
        rows, _ = await self._guarded(stmt, adapt_args(args), recover)
        return rows

    async def next_ids(self, table: str, count: int = 1) -> list[int]:
        """`count` unused ids from `table`'s own identity sequence, taken in blocks (one round
        trip per block). A row inserted with such an id is a row the client can name before
        sending it: a retried INSERT ... ON CONFLICT DO NOTHING cannot duplicate it."""
        if table not in ID_TABLES:
            raise ValueError(f"no client-side ids for table {table!r}")
        lock = self._id_locks.setdefault(table, asyncio.Lock())
        async with lock:
            have = self._ids.setdefault(table, [])
            if len(have) < count:
                seq = self._sequences.get(table)
                if seq is None:
                    seq = await self.fetchval("SELECT pg_get_serial_sequence($1, 'id')",
                                              f"public.{table}")
                    if seq is None:
                        raise AdapterError(f"table {table} has no identity sequence on id")
                    self._sequences[table] = seq
                want = max(self._id_block, count - len(have))
                # Taking values of a sequence changes nothing else: safe to retry (a retry may
                # only waste a block, leaving a gap in the ids).
                rows = await self.execute_query(
                    "SELECT nextval($1::regclass) AS id FROM generate_series(1, $2)",
                    seq, want, idempotent=True)
                have.extend(int(r["id"]) for r in rows)
            taken, self._ids[table] = have[:count], have[count:]
            return taken

    async def health_check(self) -> bool:
        try:
            return await self.fetchval("SELECT 1") == 1
        except (psycopg.Error, AdapterError, OSError):
            return False

    # --- internals ---

    def _prepare(self, query: str, args: Sequence[Any]) -> sqltext.Statement:
        stmt = sqltext.parse(query)
        stmt.check_args(len(args))
        if stmt.is_transaction_control:
            # Each call may get another pooled connection (and, through PgBouncer, another
            # server): a BEGIN here would leave a transaction open on someone else's session.
            raise sqltext.SqlTextError(
                f"{stmt.first_word.upper()} is not supported by execute_query: every statement "
                "runs in its own transaction; put the work in one statement (CTEs) instead")
        return stmt

    async def _run(self, query: str, args: Sequence[Any],
                   idempotent: bool | None) -> tuple[list[Row], int]:
        stmt = self._prepare(query, args)
        params = adapt_args(args)
        if idempotent is None:
            idempotent = stmt.is_read_only
        if idempotent:
            return await self._simple(stmt, params)
        return await self._guarded(stmt, params, None)

    def _deadline(self) -> float:
        return time.monotonic() + self.config.timeout

    async def _getconn(self, deadline: float, *, verify: bool = False) -> Connection:
        """A pooled connection; with `verify`, one that answered an empty query just now.

        Retries verify: after a failure the pool's idle connections are suspect (a restart or
        a mass pg_terminate_backend kills them all), and finding that out before sending keeps
        the retry from failing again - or from turning a write's outcome into a question. The
        first attempt does not pay for the extra round trip."""
        pool = await self._open()
        for _ in range(self.config.pool_size + 1):
            conn = await pool.getconn(timeout=max(0.001, deadline - time.monotonic()))
            if not verify:
                return conn
            try:
                await AsyncConnectionPool.check_connection(conn)
                return conn
            except psycopg.Error:
                self.stats.stale_connections += 1
                await pool.putconn(conn)  # broken: the pool discards and replaces it
        return await pool.getconn(timeout=max(0.001, deadline - time.monotonic()))

    async def _after_failure(self, exc: BaseException, kind: retry.Failure, attempt: int,
                             deadline: float, what: str) -> None:
        """Record a failure; sleep before the next attempt, or re-raise if there is none."""
        self.stats.failures_by_kind[kind.value] = self.stats.failures_by_kind.get(kind.value, 0) + 1
        if retry.is_connection_failure(exc):
            self.stats.connection_failures += 1
            await self._check_pool()
        remaining = deadline - time.monotonic()
        # A read-only server is a failover in progress: retried until the deadline, not for a
        # number of attempts (the address moves within seconds; see background_agents.retry).
        again = self.backoff.should_retry(attempt, remaining) or (
            retry.is_read_only(exc) and remaining > 0)
        if kind is retry.Failure.PERMANENT or not again:
            raise exc
        delay = min(self.backoff.delay(attempt), max(0.0, remaining))
        self.stats.retries += 1
        log.warning("%s failed (%s: %s), retry %d in %.3f s", what, kind.value,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    attempt, delay)
        await asyncio.sleep(delay)

    async def _check_pool(self) -> None:
        # After a lost connection the pool's idle connections are likely dead too (a restart,
        # pg_terminate_backend of many): test them now, once, rather than fail one retry each.
        if self._checking or self._pool is None:
            return
        self._checking = True
        try:
            await self._pool.check()
        except Exception as exc:  # a failed check must not hide the original error
            log.debug("pool check failed: %s", exc)
        finally:
            self._checking = False

    async def _simple(self, stmt: sqltext.Statement, params: list[Any], *,
                      verify: bool = False) -> tuple[list[Row], int]:
        """One round trip; retried after any transient failure (the statement is idempotent)."""
        deadline = self._deadline()
        attempt = 0
        while True:
            attempt += 1
            sent = False
            try:
                conn = await self._getconn(deadline, verify=verify or attempt > 1)
                try:
                    cur = conn.cursor()
                    sent = True
                    self.stats.statements += 1
                    await cur.execute(stmt.text, params)
                    rows = await cur.fetchall() if cur.description else []
                    return rows, cur.rowcount
                except psycopg.Error as exc:
                    await _drop_if_read_only(conn, exc)
                    raise
                finally:
                    await self.pool.putconn(conn)
            except (psycopg.Error, retry.PoolTimeout) as exc:
                kind = retry.classify(exc, sent=sent)
                if kind is retry.Failure.UNKNOWN:
                    kind = retry.Failure.NOT_APPLIED  # idempotent: repeating is harmless
                await self._after_failure(exc, kind, attempt, deadline, stmt.first_word)

    async def _guarded(self, stmt: sqltext.Statement, params: list[Any],
                       recover: Recover | None) -> tuple[list[Row], int]:
        """A write that is re-sent only when it certainly did not commit."""
        deadline = self._deadline()
        attempt = 0
        while True:
            attempt += 1
            xid: str | None = None
            try:
                conn = await self._getconn(deadline, verify=attempt > 1)
                try:
                    cur = conn.cursor()
                    async with conn.pipeline():
                        await cur.execute("BEGIN")
                        await cur.execute("SELECT pg_current_xact_id()::text AS xid")
                    row = await cur.fetchone()
                    assert row is not None
                    xid = str(row["xid"])
                    self.stats.statements += 1
                    try:
                        async with conn.pipeline():
                            await cur.execute(stmt.text, params)
                            await conn.execute("COMMIT")
                    except psycopg.Error:
                        if not conn.broken and conn.info.transaction_status in (
                                psycopg.pq.TransactionStatus.INTRANS,
                                psycopg.pq.TransactionStatus.INERROR):
                            # A server error: the transaction is still ours and uncommitted.
                            xid = None
                            await conn.rollback()
                        raise
                    rows = await cur.fetchall() if cur.description else []
                    return rows, cur.rowcount
                except psycopg.Error as exc:
                    await _drop_if_read_only(conn, exc)
                    raise
                finally:
                    await self.pool.putconn(conn)
            except (psycopg.Error, retry.PoolTimeout) as exc:
                kind = retry.classify(exc, sent=xid is not None)
                if kind is retry.Failure.UNKNOWN:
                    assert xid is not None
                    status = await self._xact_status(xid, deadline)
                    if status == "committed":
                        self.stats.committed_after_loss += 1
                        log.warning("connection lost after %s was sent; it committed "
                                    "(xid %s), not re-sent", stmt.first_word, xid)
                        if recover is not None:
                            return await recover(), -1
                        if stmt.returns_rows_on_write:
                            raise ResultLost(f"the {stmt.first_word.upper()} committed (xid "
                                             f"{xid}) but its RETURNING rows were lost") from exc
                        return [], -1
                    if status != "aborted":
                        raise WriteOutcomeUnknown(
                            f"connection lost after {stmt.first_word.upper()} was sent; "
                            f"pg_xact_status({xid}) = {status!r} after "
                            f"{self.config.timeout:g} s: not re-sent") from exc
                    self.stats.aborted_after_loss += 1
                    kind = retry.Failure.NOT_APPLIED
                    what = f"{stmt.first_word} (sent; pg_xact_status({xid}) = aborted)"
                else:
                    what = stmt.first_word
                await self._after_failure(exc, kind, attempt, deadline, what)

    async def _xact_status(self, xid: str, deadline: float) -> str | None:
        """'committed' or 'aborted' once the server knows; 'in progress' (or None: too old to
        tell) if it still does not by the deadline. A transaction whose client vanished ends
        when its backend notices (at once after pg_terminate_backend; via PgBouncer, when it
        closes the server connection)."""
        stmt = sqltext.parse("SELECT pg_xact_status($1::xid8) AS status")
        attempt = 0
        while True:
            attempt += 1
            try:
                rows, _ = await self._simple(stmt, [xid], verify=True)
            except (psycopg.Error, retry.PoolTimeout) as exc:
                log.warning("could not ask for the status of xid %s: %s", xid, exc)
                return None
            status = rows[0]["status"] if rows else None
            if status != "in progress" or time.monotonic() >= deadline:
                return None if status is None else str(status)
            await asyncio.sleep(min(0.5, 0.01 * 2 ** min(attempt, 6)))
