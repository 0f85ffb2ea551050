"""The client library against the deployed sandbox: through PgBouncer (6432, transaction pooling)
over TLS verify-full with the bundle's CA, as the application role with its real password,
configured from the seed's POSTGRESQL_* variables only. Rows written here are deleted at the end
of each test (the deployed database is shared by the session's tests)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from background_agents.agent_api import AgentClient
from background_agents.config import AdapterConfig
from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter
from background_agents.example_agent import ExampleAgent
from deploy import secrets
from tests.integration.background_agents.chaos import agent_workload, kill_until
from tests.sandbox_fixtures import Deployed, admin_dsn

APP_DB, APP_USER, PGBOUNCER_PORT = "background_agents", "bg_agents_user", 6432


def seed_env(deployed: Deployed) -> dict[str, str]:
    return {
        "POSTGRESQL_HOST": deployed.primary.address,
        "POSTGRESQL_PORT": str(PGBOUNCER_PORT),
        "POSTGRESQL_DATABASE": APP_DB,
        "POSTGRESQL_USER": APP_USER,
        "POSTGRESQL_PASSWORD": secrets.password(APP_USER),
        "POSTGRESQL_SSL_MODE": "verify-full",
        "POSTGRESQL_SSL_ROOT_CERT": str(secrets.secrets_dir() / "ca" / "ca.crt"),
        "POSTGRESQL_POOL_SIZE": "3",
        "POSTGRESQL_TIMEOUT": "20",
    }


@pytest.fixture
def agents_db(deployed: Deployed) -> Iterator[tuple[str, str]]:
    """(superuser DSN of the deployed agents database, a unique agent id prefix); the prefix's
    rows are removed afterwards."""
    dsn = admin_dsn(deployed.primary.address, APP_DB)
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    yield dsn, prefix
    with psycopg.connect(dsn, autocommit=True) as conn:
        like = prefix + "%"
        conn.execute("DELETE FROM system_events WHERE agent_id LIKE %s", [like])
        conn.execute("DELETE FROM agent_communications WHERE from_agent LIKE %s", [like])
        conn.execute("DELETE FROM agents WHERE agent_id LIKE %s", [like])  # cascades


def count(dsn: str, query: str, *params: object) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
        return int(row[0]) if row else 0


def test_seed_style_agent_through_pgbouncer_over_tls(deployed: Deployed,
                                                     agents_db: tuple[str, str]) -> None:
    dsn, prefix = agents_db
    agent_id = f"{prefix}-seed"
    config = AdapterConfig.from_env(seed_env(deployed))
    assert (config.port, config.ssl_mode) == (PGBOUNCER_PORT, "verify-full")
    agent = ExampleAgent(agent_id, db=PostgreSQLAdapter(config), heartbeat_interval=0.2,
                         metrics_interval=0.3, cycle_interval=0.1)

    async def run() -> tuple[object, object, int, bool]:
        await agent.run(max_cycles=10)
        # What the session looks like: TLS to PgBouncer on 6432, as the app role; PgBouncer
        # reaches PostgreSQL over its local socket (no server address).
        async with PostgreSQLAdapter(config) as db, db.pool.connection() as conn:
            cur = await conn.execute("SELECT current_user AS who, inet_server_addr() AS addr")
            row = await cur.fetchone()
            assert row is not None
            return row["who"], row["addr"], conn.info.port, conn.pgconn.ssl_in_use

    who, server_addr, client_port, tls = asyncio.run(run())
    assert (who, server_addr, client_port, tls) == (APP_USER, None, PGBOUNCER_PORT, True)
    with psycopg.connect(dsn) as conn:
        state, stopped, beat = conn.execute(
            "SELECT state, stopped_at, last_heartbeat FROM agents WHERE agent_id = %s",
            [agent_id]).fetchone() or (None, None, None)
    assert state == "stopped" and stopped is not None and beat is not None
    assert count(dsn, "SELECT count(*) FROM performance_metrics WHERE agent_id = %s"
                      " AND metric_name = 'cpu_usage'", agent_id) == 10
    assert count(dsn, "SELECT count(*) FROM performance_metrics WHERE agent_id = %s"
                      " AND metric_name = 'cycle_count'", agent_id) == 10
    assert count(dsn, "SELECT count(*) FROM agent_heartbeats WHERE agent_id = %s",
                 agent_id) >= 2


def test_server_connections_killed_behind_pgbouncer(deployed: Deployed,
                                                    agents_db: tuple[str, str]) -> None:
    dsn, prefix = agents_db
    agent_id = f"{prefix}-chaos"
    app = f"{prefix}-chaos"
    rounds = 300
    config = AdapterConfig.from_env(seed_env(deployed), application_name=app, max_attempts=12,
                                    retry_max_delay=0.5)

    async def main() -> tuple[int, list[int], PostgreSQLAdapter]:
        async with PostgreSQLAdapter(config) as db:
            client = AgentClient(db, agent_id)
            await client.register()
            done = asyncio.Event()

            async def killer() -> int:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    async def kill_once() -> int:
                        # PgBouncer sets the client's application_name on the server connection.
                        cur = await conn.execute(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE usename = %s AND datname = %s AND application_name = %s",
                            [APP_USER, APP_DB, app])
                        row = await cur.fetchone()
                        return int(row[0]) if row else 0
                    return await kill_until(done, kill_once)

            kills, (_, acked_events) = await asyncio.wait_for(asyncio.gather(
                killer(), agent_workload(db, client, agent_id, rounds, done)), 240)
            return kills, acked_events, db

    kills, acked_events, db = asyncio.run(main())
    assert kills >= 5, f"only {kills} server connections killed"
    with psycopg.connect(dsn) as conn:
        for metric in ("chaos", "chaos-batched"):
            got = [r[0] for r in conn.execute(
                "SELECT value FROM performance_metrics WHERE agent_id = %s AND metric_name = %s"
                " ORDER BY value", [agent_id, metric])]
            assert got == [float(i) for i in range(rounds)], metric
        events = [r[0] for r in conn.execute(
            "SELECT (event_data->>'i')::int FROM system_events WHERE agent_id = %s"
            " AND event_type = 'chaos' ORDER BY 1", [agent_id])]
    assert events == acked_events
    print(f"killed {kills} server connections behind PgBouncer; adapter stats: {db.stats}")
