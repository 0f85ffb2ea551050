"""The seed's SQL, verbatim (tests/fixtures/seed), against the deployed lab, as the roles that
would run it, directly (TLS, 5432) and through PgBouncer (TLS, 6432).

The agents' statements (inserts into every table, monitoring queries, the materialized view's
SELECT, the 30-day DELETEs) run as the application role in one transaction that is rolled back,
so the session lab keeps no seed rows and the fixtures' fixed keys can be used on both paths.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from deploy import secrets
from tests.sandbox_fixtures import Deployed, admin_dsn
from tests.seed_sql import READ_BACK, SEED_AGENTS, fixture, fixtures, insert_seed_rows

APP_DB = "background_agents"
APP = "bg_agents_user"
# The seed's troubleshooting reads every session's query text: the humans' troubleshooting
# role (pg_monitor), not the exporter's bg_agents_monitor, which sees no query text.
OPS = "bg_agents_ops"
PORTS = {"direct": 5432, "pgbouncer": 6432}

Conn = psycopg.Connection[tuple[Any, ...]]


def dsn(deployed: Deployed, user: str, port: int) -> str:
    return psycopg.conninfo.make_conninfo(
        host=deployed.primary.address, port=str(port), dbname=APP_DB, user=user,
        password=secrets.password(user), sslmode="verify-full",
        sslrootcert=str(secrets.secrets_dir() / "ca" / "ca.crt"), connect_timeout="10")


@contextmanager
def session(conninfo: str, *, autocommit: bool = False) -> Iterator[Conn]:
    # RawCursor: the seed's $1 placeholders go to the server as written. No prepared
    # statements: PgBouncer pools transactions.
    with psycopg.connect(conninfo, autocommit=autocommit, prepare_threshold=None,
                         cursor_factory=psycopg.RawCursor) as conn:
        assert conn.pgconn.ssl_in_use
        yield conn


def rows(conn: Conn, statement: str,
         params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    cur = conn.execute(statement, params)
    return cur.fetchall() if cur.description else []


def by_name(conn: Conn, statement: str) -> list[dict[str, Any]]:
    cur = conn.execute(statement)
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


@pytest.mark.parametrize("path", PORTS)
def test_seed_inserts_and_queries_as_the_app_role(deployed: Deployed, path: str) -> None:
    with session(dsn(deployed, APP, PORTS[path])) as conn, \
            conn.transaction(force_rollback=True):
        assert rows(conn, "SELECT current_user") == [(APP,)]
        assert insert_seed_rows(conn) == {name[3:]: "ok" for name in fixtures("inserts")}
        got = {table: rows(conn, query) for table, (query, _) in READ_BACK.items()}
        assert got == {table: expected for table, (_, expected) in READ_BACK.items()}

        mon = {name: [by_name(conn, s) for s in stmts]
               for name, stmts in fixtures("monitoring").items()}
    active = {r["agent_id"]: r for r in mon["active_agents"][0]}
    assert {"performance_monitor", "help_agent"} <= set(active)
    assert all(r["state"] == "running" for r in active.values())
    assert active["help_agent"]["uptime"] >= dt.timedelta(hours=1)

    recent = [(r["agent_id"], r["cpu_usage"]) for r in mon["recent_heartbeats"][0]
              if r["agent_id"] in SEED_AGENTS]
    assert sorted(recent, key=repr) == sorted(
        [("performance_monitor", 25.5), ("performance_monitor", 75),
         ("seed_agent_nulls", None), ("seed_agent_nulls", None)], key=repr)

    summary = {(r["agent_id"], r["metric_name"]): (r["avg_value"], r["max_value"],
                                                   r["sample_count"])
               for r in mon["performance_metrics_summary"][0]}
    assert summary[("performance_monitor", "cpu_usage")] == (Decimal("25.5"), Decimal("25.5"), 1)
    assert summary[("help_agent", "queue_depth")] == (None, None, 1)  # a NULL value counts

    health = {r["metric"]: r["value"] for r in mon["system_health_overview"][0]}
    assert list(health) == ["Total Agents", "Running Agents", "Recent Heartbeats (5min)",
                            "Error Events (1hour)"]
    assert health["Total Agents"] >= 4 and health["Running Agents"] >= 2
    assert health["Recent Heartbeats (5min)"] >= 4 and health["Error Events (1hour)"] >= 1

    plan = "\n".join(r["QUERY PLAN"] for r in mon["explain_heartbeats"][0])
    assert "agent_heartbeats" in plan and "actual time" in plan and "Buffers" in plan

    view = {r["agent_id"]: r for r in mon["agent_health_summary_select"][0]}
    assert (view["performance_monitor"]["heartbeat_count"],
            view["performance_monitor"]["avg_cpu"]) == (2, Decimal("50.25"))
    assert (view["seed_agent_nulls"]["heartbeat_count"], view["seed_agent_nulls"]["avg_cpu"]) \
        == (2, None)


def test_materialized_view_has_the_seeds_columns_and_meaning(deployed: Deployed) -> None:
    """Refreshed over the seed's rows, our agent_health_summary gives, for the seed's columns,
    exactly what the seed's own SELECT gives (the view's owner refreshes it: the maintenance
    job, as a superuser here, directly: PgBouncer does not let superusers in)."""
    (select,) = fixture("monitoring/agent_health_summary_select.sql")
    with session(admin_dsn(deployed.primary.address, APP_DB)) as conn, \
            conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {APP}")
        assert insert_seed_rows(conn) == {name[3:]: "ok" for name in fixtures("inserts")}
        conn.execute("RESET ROLE")
        conn.execute("REFRESH MATERIALIZED VIEW agent_health_summary")
        seed = {r[0]: r for r in rows(conn, select) if r[0] in SEED_AGENTS}
        cur = conn.execute("SELECT * FROM agent_health_summary WHERE agent_id = ANY($1)",
                           [list(SEED_AGENTS)])
        columns = [c.name for c in cur.description or []]
        ours = {r[0]: r[:4] for r in cur.fetchall()}
    assert columns[:4] == ["agent_id", "heartbeat_count", "last_heartbeat", "avg_cpu"]
    assert ours == seed
    assert set(ours) == {"performance_monitor", "seed_agent_nulls"}  # agents with heartbeats


@pytest.mark.parametrize("path", PORTS)
def test_seed_troubleshooting_queries_as_the_ops_role(deployed: Deployed, path: str) -> None:
    with session(dsn(deployed, OPS, PORTS[path]), autocommit=True) as conn:
        results = {name: [by_name(conn, s) for s in stmts]
                   for name, stmts in fixtures("troubleshooting").items()
                   if name != "table_bloat"}
        # The seed's bloat query is wrong on every PostgreSQL: pg_stat_user_tables names the
        # table `relname` (`tablename` is pg_tables'). Verbatim, it fails so; with that one name
        # corrected, it runs.
        (bloat_query,) = fixture("troubleshooting/table_bloat.sql")
        with pytest.raises(psycopg.errors.UndefinedColumn, match='column "tablename" does not'):
            conn.execute(bloat_query)
        corrected = bloat_query.replace("schemaname, tablename,",
                                        "schemaname, relname AS tablename,")
        assert corrected != bloat_query
        results["table_bloat"] = [by_name(conn, corrected)]
    (count,), long_running = results["connections"]
    assert count["count"] >= 1
    assert all(r["state"] != "idle" for r in long_running)
    (slow,) = results["slow_queries"]
    assert 1 <= len(slow) <= 10 and {"query", "mean_exec_time", "calls"} == set(slow[0])
    # pg_monitor (pg_read_all_stats) sees every statement's text.
    assert not [r for r in slow if r["query"] == "<insufficient privilege>"]
    (bloat,) = results["table_bloat"]
    assert all(0 < r["dead_percentage"] <= 100 for r in bloat)
    databases, largest = results["disk_space"]
    assert APP_DB in {r["datname"] for r in databases}
    assert len(largest) == 10 and all(r["pg_size_pretty"] for r in largest)


@pytest.mark.parametrize("path", PORTS)
def test_seed_maintenance_reads_and_retention_deletes_as_the_app_role(
        deployed: Deployed, path: str) -> None:
    old = "NOW() - INTERVAL '40 days'"
    with session(dsn(deployed, APP, PORTS[path])) as conn, \
            conn.transaction(force_rollback=True):
        conn.execute("INSERT INTO agents (agent_id, state, started_at) VALUES"
                     " ('performance_monitor', 'running', NOW())")
        conn.execute("INSERT INTO agent_heartbeats (agent_id, timestamp) VALUES"
                     f" ('performance_monitor', {old}), ('performance_monitor', NOW())")
        conn.execute("INSERT INTO performance_metrics (agent_id, metric_name, value, timestamp)"
                     f" VALUES ('performance_monitor', 'cpu_usage', 1, {old})")
        conn.execute(f"INSERT INTO system_events (event_type, timestamp) VALUES ('x', {old})")
        (long_running,) = [by_name(conn, s) for s in fixture("maintenance/app_daily.sql")]
        size, *deletes = fixture("maintenance/app_weekly.sql")
        (pretty,) = rows(conn, size)[0]
        deleted = [conn.execute(s).rowcount for s in deletes]
        left = rows(conn, "SELECT count(*) FROM agent_heartbeats"
                          " WHERE agent_id = 'performance_monitor'")
    assert all(r["duration"] > dt.timedelta(minutes=5) for r in long_running)
    assert pretty.endswith(("kB", "MB", "GB"))
    assert all(n >= 1 for n in deleted), deleted  # each DELETE removed (at least) our old row
    assert left == [(1,)]  # today's heartbeat stays


def test_seed_maintenance_as_admin(deployed: Deployed) -> None:
    """ANALYZE, VACUUM ANALYZE, VACUUM FULL, REINDEX DATABASE need the tables' owner or a
    superuser (as the app role they only warn and skip): run as the break-glass superuser,
    directly (PgBouncer does not let superusers in)."""
    notices: list[str] = []
    with session(admin_dsn(deployed.primary.address, APP_DB), autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        for job in ("admin_daily", "admin_weekly", "admin_monthly"):
            for stmt in fixture(f"maintenance/{job}.sql"):
                conn.execute(stmt)
        analyzed = rows(conn, "SELECT count(*) FROM pg_stat_user_tables"
                              " WHERE relname = 'agents' AND last_analyze IS NOT NULL")
    assert analyzed == [(1,)]
    assert not [n for n in notices if "skipping" in n], notices
