"""Connections killed under the client: it reconnects and goes on, and no acknowledged write
is lost or duplicated - the three outcomes of a broken write, each forced deterministically
(never sent; sent and rolled back; committed but the reply lost), then all of them at random
while an agent works and its backends are terminated every 20-80 ms."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from background_agents.agent_api import AgentClient
from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter, ResultLost
from tests.integration.background_agents.chaos import SEED_INSERT, agent_workload, kill_until
from tests.integration.background_agents.conftest import app_config
from tests.integration.background_agents.proxy import Proxy

# The seed's insert, made slow so that a test can act while it runs (0.6 s before the row).
SLOW_INSERT = ("INSERT INTO performance_metrics (agent_id, metric_name, value)"
               " SELECT $1, $2, $3 FROM pg_sleep(0.6)")
T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 120) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def kill(admin_dsn: str, application_name: str) -> int:
    """pg_terminate_backend every session of `application_name`; how many."""
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()", [application_name])
        row = await cur.fetchone()
        return int(row[0]) if row else 0


def values(dsn: str, metric: str) -> list[float]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            "SELECT value FROM performance_metrics WHERE metric_name = %s ORDER BY value",
            [metric])]


@asynccontextmanager
async def adapter(dsn: str, **overrides: Any) -> AsyncIterator[PostgreSQLAdapter]:
    db = PostgreSQLAdapter(app_config(dsn, **overrides))
    await db.connect()
    try:
        await AgentClient(db, "a").register()
        yield db
    finally:
        await db.close()


@asynccontextmanager
async def via_proxy(dsn: str, **overrides: Any) -> AsyncIterator[tuple[PostgreSQLAdapter, Proxy]]:
    """An adapter (one connection) whose traffic goes through a Proxy on loopback."""
    params = conninfo_to_dict(dsn)
    proxy = Proxy(str(params.get("host", "127.0.0.1")), int(str(params.get("port", 5432))))
    await proxy.start()
    try:
        async with adapter(dsn, pool_size=1, port=proxy.port,
                           extra={"hostaddr": "127.0.0.1"}, **overrides) as db:
            yield db, proxy
    finally:
        await proxy.close()


async def blackhole_during(proxy: Proxy, call: Callable[[], Awaitable[T]]) -> T:
    """Run `call` (a slow statement) and swallow its reply: by 0.25 s the statement has been
    sent and is sleeping server-side; it commits at 0.6 s; the client is cut off at 1.25 s."""
    task = asyncio.ensure_future(call())
    await asyncio.sleep(0.25)
    assert proxy.blackhole(close_after=1.0) == 1
    return await task


def test_idle_connections_killed(agents_dsn: str) -> None:
    app = f"t-{uuid.uuid4().hex[:8]}"

    async def main() -> PostgreSQLAdapter:
        async with adapter(agents_dsn, pool_size=4, pool_min_size=4, application_name=app) as db:
            await asyncio.sleep(0.2)  # let the pool fill
            assert await kill(agents_dsn, app) == 4
            await db.execute_query(SEED_INSERT, "a", "idle", 1.0)
            await db.execute_query(SEED_INSERT, "a", "idle", 2.0)
            return db

    db = run(main())
    assert values(agents_dsn, "idle") == [1.0, 2.0]
    assert db.stats.connection_failures >= 1
    # The write was never sent on a dead connection's behalf: nothing to resolve.
    assert db.stats.committed_after_loss == db.stats.aborted_after_loss == 0


def test_write_killed_while_running_is_sent_again_once(agents_dsn: str) -> None:
    app = f"t-{uuid.uuid4().hex[:8]}"

    async def main() -> PostgreSQLAdapter:
        async with adapter(agents_dsn, application_name=app) as db:
            task = asyncio.ensure_future(db.execute_query(SLOW_INSERT, "a", "killed", 1.0))
            await asyncio.sleep(0.25)
            assert await kill(agents_dsn, app) >= 1
            await task
            return db

    db = run(main())
    assert values(agents_dsn, "killed") == [1.0]
    assert db.stats.aborted_after_loss == 1  # pg_xact_status said aborted: re-sent, once


def test_write_committed_but_reply_lost_is_not_sent_again(agents_dsn: str) -> None:
    async def main() -> PostgreSQLAdapter:
        async with via_proxy(agents_dsn) as (db, proxy):
            rows = await blackhole_during(
                proxy, lambda: db.execute_query(SLOW_INSERT, "a", "lost-reply", 1.0))
            assert rows == []
            return db

    db = run(main())
    assert values(agents_dsn, "lost-reply") == [1.0]
    assert db.stats.committed_after_loss == 1  # pg_xact_status said committed: not re-sent


def test_lost_returning_rows_are_reported_not_resent(agents_dsn: str) -> None:
    async def main() -> None:
        async with via_proxy(agents_dsn) as (db, proxy):
            with pytest.raises(ResultLost, match="committed"):
                await blackhole_during(proxy, lambda: db.execute_query(
                    SLOW_INSERT + " RETURNING id", "a", "lost-returning", 1.0))

    run(main())
    assert values(agents_dsn, "lost-returning") == [1.0]


def test_keyed_insert_is_retried_without_duplicate(agents_dsn: str) -> None:
    # What the agent API does: an id chosen before the first attempt and ON CONFLICT DO
    # NOTHING, sent as idempotent (one round trip, retried blindly after the lost reply).
    async def main() -> PostgreSQLAdapter:
        async with via_proxy(agents_dsn) as (db, proxy):
            (key,) = await db.next_ids("system_events")
            await blackhole_during(proxy, lambda: db.execute_query(
                "INSERT INTO system_events (id, timestamp, event_type, agent_id)"
                " SELECT $1, '2030-01-01T00:00:00Z', 'keyed', $2 FROM pg_sleep(0.6)"
                " ON CONFLICT DO NOTHING", key, "a", idempotent=True))
            return db

    db = run(main())
    assert db.stats.retries >= 1
    with psycopg.connect(agents_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM system_events WHERE event_type = 'keyed'"
                            ).fetchone() == (1,)


def set_read_only(dsn: str, read_only: bool) -> None:
    """New sessions of the test's database refuse writes, as the old leader does once Patroni
    restarts it as a replica (this session overrides it for itself, to be able to undo it)."""
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True,
                         options="-c default_transaction_read_only=off") as conn:
        conn.execute(f'ALTER DATABASE "{name}" '
                     + ("SET default_transaction_read_only = on" if read_only
                        else "RESET default_transaction_read_only"))


def read_only_insert(db: PostgreSQLAdapter, metric: str) -> Awaitable[Any]:
    return db.execute_query("INSERT INTO performance_metrics (agent_id, metric_name, value)"
                            " VALUES ($1, $2, $3)", "a", metric, 1.0)


def test_write_refused_as_read_only_waits_for_a_writable_server(agents_dsn: str) -> None:
    """A failover seen through the agents' address: for a moment it still reaches the old
    leader, restarted read-only; then its sessions are reset and new ones reach the new leader.
    The write is retried through the whole window (more tries than max_attempts: bounded by the
    time budget) and lands once."""
    app = f"t-{uuid.uuid4().hex[:8]}"

    async def main() -> PostgreSQLAdapter:
        async with adapter(agents_dsn, application_name=app, max_attempts=3) as db:
            await asyncio.to_thread(set_read_only, agents_dsn, True)
            await kill(agents_dsn, app)  # the pool's next sessions start read-only
            task = asyncio.ensure_future(read_only_insert(db, "failover"))
            await asyncio.sleep(1.5)
            assert not task.done(), task
            await asyncio.to_thread(set_read_only, agents_dsn, False)
            await kill(agents_dsn, app)  # the address moved: the old sessions are reset
            await task
            return db

    db = run(main())
    assert values(agents_dsn, "failover") == [1.0]
    refused = db.stats.failures_by_kind.get("not applied", 0)
    assert refused > 3, db.stats  # past max_attempts while the server was read-only


def test_write_to_a_server_that_stays_read_only_fails_after_the_budget(agents_dsn: str) -> None:
    """A client pointed at a replica by mistake gets the server's own error, once the time
    budget (POSTGRESQL_TIMEOUT) is spent."""
    app = f"t-{uuid.uuid4().hex[:8]}"

    async def main() -> float:
        async with adapter(agents_dsn, application_name=app, timeout=2) as db:
            await asyncio.to_thread(set_read_only, agents_dsn, True)
            await kill(agents_dsn, app)
            started = time.monotonic()
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="read-only"):
                await read_only_insert(db, "replica")
            return time.monotonic() - started

    took = run(main())
    assert 1.5 <= took < 10, took
    assert values(agents_dsn, "replica") == []


def test_claim_committed_but_reply_lost_returns_the_claimed_rows(agents_dsn: str) -> None:
    async def main() -> list[int]:
        async with via_proxy(agents_dsn) as (db, proxy):
            sender = AgentClient(db, "a")
            sent = [await sender.send_message("a", "job", {"n": i}) for i in range(3)]
            token = sender._claim_token()

            async def recover() -> list[dict[str, Any]]:
                return await db.fetch("SELECT id FROM agent_communications"
                                      " WHERE to_agent = $1 AND processed_at = $2",
                                      "a", token)

            rows = await blackhole_during(proxy, lambda: db.execute_claim(
                "UPDATE agent_communications AS c SET status = 'processed', processed_at = $2"
                " FROM pg_sleep(0.6) WHERE c.to_agent = $1 AND c.status = 'sent'"
                " RETURNING c.id", "a", token, recover=recover))
            assert db.stats.committed_after_loss == 1
            assert sorted(r["id"] for r in rows) == sent
            return sent

    run(main())


def test_backends_terminated_mid_run_lose_and_duplicate_nothing(agents_dsn: str) -> None:
    app = f"t-{uuid.uuid4().hex[:8]}"
    rounds = 600

    async def main() -> tuple[PostgreSQLAdapter, int, list[int], list[int]]:
        async with adapter(agents_dsn, pool_size=3, application_name=app,
                           max_attempts=12) as db:
            client = AgentClient(db, "a")
            done = asyncio.Event()

            async def killer() -> int:
                return await kill_until(done, lambda: kill(agents_dsn, app))

            kills, (acked_seed, acked_events) = await asyncio.gather(
                killer(), agent_workload(db, client, "a", rounds, done))
            return db, kills, acked_seed, acked_events

    db, kills, acked_seed, acked_events = run(main(), timeout=240)
    assert kills >= 10, f"only {kills} sessions killed: the test did not exercise failures"
    assert db.stats.connection_failures >= 1
    assert acked_seed == list(range(rounds))
    # Every acknowledged write is there exactly once.
    assert values(agents_dsn, "chaos") == [float(i) for i in range(rounds)]
    assert values(agents_dsn, "chaos-batched") == [float(i) for i in range(rounds)]
    with psycopg.connect(agents_dsn) as conn:
        events = [r[0] for r in conn.execute(
            "SELECT (event_data->>'i')::int FROM system_events WHERE event_type = 'chaos'"
            " ORDER BY 1")]
    assert events == acked_events
    print(f"killed {kills} sessions; adapter stats: {db.stats}")
