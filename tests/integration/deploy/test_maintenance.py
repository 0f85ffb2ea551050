"""Scheduled maintenance on the sandbox primary: triggering each job once has its effect
(view refreshed, long queries logged, expired partition gone, database size recorded, invalid
index rebuilt), and a failing job fails its unit, its status file and a system event."""

from __future__ import annotations

import contextlib
import shlex
import threading
import time

import psycopg
import pytest

from bgdb import migrate
from tests.integration.deploy.backup_helpers import (
    journal,
    must,
    sql,
    ssh,
    start_unit,
    status,
    wait_for,
)
from tests.sandbox_fixtures import Deployed, admin_dsn

AGENT = "bgdb-test-maintenance-agent"


@pytest.fixture(scope="module")
def schema(deployed: Deployed) -> Deployed:
    """The agents' schema (the deploy applies it; applied here only if it is not there)."""
    if sql(deployed, "SELECT to_regclass('public.schema_migrations') IS NOT NULL") != "t":
        with migrate.connect(admin_dsn(deployed.primary.address, "background_agents")) as conn:
            migrate.apply(conn, migrate.DEFAULT_DIR)
    return deployed


def job_command(deployed: Deployed, period: str, **overrides: str) -> str:
    """The installed unit's command, as postgres, with some psql variables replaced and its
    own status directory (the unit's status stays as the timer left it)."""
    unit = must(deployed, f"cat /etc/systemd/system/bgdb-maintenance-{period}.service")
    args = shlex.split(next(line for line in unit.splitlines()
                            if line.startswith("ExecStart="))[len("ExecStart="):])
    args[args.index("--status-dir") + 1] = "/tmp/bgdb-test-status"
    for name, value in overrides.items():
        i = next(i for i, a in enumerate(args) if a.startswith(f"{name}="))
        args[i] = f"{name}={value}"
    return shlex.join(["runuser", "-u", "postgres", "--", *args])


def test_daily_refreshes_the_view(schema: Deployed) -> None:
    sql(schema, f"INSERT INTO agents (agent_id, name, type) VALUES ('{AGENT}', 'm', 'test') "
                f"ON CONFLICT DO NOTHING; INSERT INTO agent_heartbeats (agent_id) "
                f"VALUES ('{AGENT}')")
    try:
        out = start_unit(schema, "bgdb-maintenance-daily")
        assert out.returncode == 0, journal(schema, "bgdb-maintenance-daily")
        row = sql(schema, "SELECT heartbeat_count, now() - refreshed_at < interval '1 minute' "
                          f"FROM agent_health_summary WHERE agent_id = '{AGENT}'")
        assert row == "1\tt", f"view not refreshed: {row!r}"
        assert status(schema, "maintenance-daily")["ok"] is True
    finally:
        sql(schema, f"DELETE FROM agents WHERE agent_id = '{AGENT}'")


def test_daily_logs_long_running_queries(schema: Deployed) -> None:
    dsn = admin_dsn(schema.primary.address)
    pid: list[int] = []

    def sleeper() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            pid.append(row[0])
            with contextlib.suppress(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(60)")

    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        wait_for("the long query to start", lambda: bool(pid), timeout=15, every=0.2)
        time.sleep(2.5)
        must(schema, job_command(schema, "daily", long_query_seconds="2"))
        logged = sql(schema, "SELECT severity, event_data->>'query' FROM system_events "
                             "WHERE event_type = 'long_running_query' "
                             f"AND (event_data->>'pid')::int = {pid[0]} "
                             "AND timestamp > now() - interval '5 minutes'")
        assert logged == "WARNING\tSELECT pg_sleep(60)", f"long query not logged: {logged!r}"
    finally:
        if pid:
            sql(schema, f"SELECT pg_cancel_backend({pid[0]})", db="postgres")
        thread.join(timeout=30)


def test_weekly_drops_expired_partitions_and_records_size(schema: Deployed) -> None:
    old = sql(schema, "SELECT partition_name FROM bgdb_partition_premake(0, "
                      "(now() AT TIME ZONE 'UTC')::date - 40) WHERE parent_table = "
                      "'agent_heartbeats'")
    assert old.startswith("agent_heartbeats_p"), old
    out = start_unit(schema, "bgdb-maintenance-weekly")
    assert out.returncode == 0, journal(schema, "bgdb-maintenance-weekly")
    assert sql(schema, f"SELECT to_regclass('{old}') IS NULL") == "t", f"{old} still exists"
    size = sql(schema, "SELECT (event_data->>'database_size_bytes')::bigint FROM system_events "
                       "WHERE event_type = 'database_size' AND timestamp > now() - interval "
                       "'5 minutes' ORDER BY timestamp DESC LIMIT 1")
    assert int(size) > 1_000_000
    ahead = sql(schema, "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                        "'agent_heartbeats'::regclass")
    assert int(ahead) >= 15  # today + 14 days ahead (+ DEFAULT)


def test_monthly_rebuilds_an_invalid_index_concurrently(schema: Deployed) -> None:
    sql(schema, "DROP TABLE IF EXISTS bgdb_test_reindex; CREATE TABLE bgdb_test_reindex AS "
                "SELECT i FROM generate_series(1, 1000) i")
    # A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind (division by zero).
    failed = ssh(schema, "runuser -u postgres -- psql -XAtq -d background_agents -c "
                         "'CREATE INDEX CONCURRENTLY bgdb_test_reindex_idx "
                         "ON bgdb_test_reindex ((1 / (i - 500)))'")
    assert failed.returncode != 0 and "division by zero" in failed.stderr
    assert sql(schema, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                       "'bgdb_test_reindex_idx'::regclass") == "f"
    sql(schema, "DELETE FROM bgdb_test_reindex WHERE i = 500")
    try:
        out = start_unit(schema, "bgdb-maintenance-monthly")
        assert out.returncode == 0, journal(schema, "bgdb-maintenance-monthly")
        assert sql(schema, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                           "'bgdb_test_reindex_idx'::regclass") == "t"
        assert "REINDEX INDEX CONCURRENTLY" in journal(schema, "bgdb-maintenance-monthly") or \
            status(schema, "maintenance-monthly")["ok"]
    finally:
        sql(schema, "DROP TABLE bgdb_test_reindex")


def test_a_failing_job_shows(schema: Deployed) -> None:
    sql(schema, "ALTER MATERIALIZED VIEW agent_health_summary RENAME TO agent_health_summary_x")
    try:
        out = start_unit(schema, "bgdb-maintenance-daily")
        assert out.returncode != 0, "the daily job succeeded without its view"
        assert ssh(schema, "systemctl is-failed bgdb-maintenance-daily.service").stdout.strip() \
            == "failed"
        failed = status(schema, "maintenance-daily")
        assert failed["ok"] is False and failed["exit_code"] == 1
        assert failed["last_success_timestamp"] is not None  # from the earlier run
        assert "psql exited with 3" in failed["message"]
        event = sql(schema, "SELECT severity FROM system_events WHERE event_type = "
                            "'scheduled_job_failed' AND event_data->>'job' = 'maintenance-daily' "
                            "AND timestamp > now() - interval '5 minutes'")
        assert event.splitlines()[:1] == ["ERROR"]
        assert "agent_health_summary" in journal(schema, "bgdb-maintenance-daily")
    finally:
        sql(schema, "ALTER MATERIALIZED VIEW agent_health_summary_x "
                    "RENAME TO agent_health_summary")
        ssh(schema, "systemctl reset-failed bgdb-maintenance-daily.service")
    assert start_unit(schema, "bgdb-maintenance-daily").returncode == 0
    assert status(schema, "maintenance-daily")["ok"] is True
