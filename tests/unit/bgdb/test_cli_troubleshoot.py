"""bgdb troubleshoot's checks on plain rows: what passes each threshold, and what is said."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
from rich.console import Console

from bgdb import troubleshoot
from bgdb.monitoring import Disk
from bgdb.troubleshoot import Thresholds

TH = Thresholds()
SERVER = {"max_connections": 100, "superuser_reserved_connections": 3}


def states(**counts: int) -> list[dict[str, Any]]:
    return [{"user_name": "bg_agents_user", "state": s.replace("_", " "), "connections": n}
            for s, n in counts.items()]


def test_connections_under_the_threshold_pass() -> None:
    sec = troubleshoot.check_connections(states(active=10, idle=67), SERVER, TH)
    assert not sec.flagged
    assert sec.summary.startswith("77 client connections of 97 usable (79%)")
    assert sec.rows == [{"state": "idle", "connections": 67},
                        {"state": "active", "connections": 10}]


def test_connections_at_the_threshold_are_flagged_with_idle_in_transaction_advice() -> None:
    rows = states(active=40, idle=30, idle_in_transaction=8)
    sec = troubleshoot.check_connections(rows, SERVER, TH)
    assert sec.flagged
    assert "PgBouncer" in sec.advice and "8 idle in transaction" in sec.advice
    assert not troubleshoot.check_connections(rows, SERVER, Thresholds(
        connection_use_percent=81)).flagged


def test_connections_of_several_roles_add_up_per_state() -> None:
    rows = [{"user_name": "a", "state": "idle", "connections": 2},
            {"user_name": "b", "state": "idle", "connections": 3}]
    sec = troubleshoot.check_connections(rows, SERVER, TH)
    assert sec.rows == [{"state": "idle", "connections": 5}]


def running(pid: int, state: str, duration: float | None, transaction: float | None
            ) -> dict[str, Any]:
    return {"pid": pid, "state": state, "duration_seconds": duration,
            "transaction_seconds": transaction, "query": "SELECT pg_sleep(1000)"}


def test_long_queries_use_the_query_age_or_the_open_transaction() -> None:
    rows = [running(1, "active", 700, 700), running(2, "active", 30, 900),
            running(3, "idle in transaction", 5, 650), running(4, "active", None, None)]
    sec = troubleshoot.check_long_queries(rows, TH)
    assert sec.flagged and "pg_cancel_backend" in sec.advice
    assert [(r["pid"], r["age_seconds"]) for r in sec.flagged_rows] == [(1, 700), (3, 650)]
    assert sec.summary == "2 of 4 running queries over the threshold"
    assert sec.title == "Long-running queries (over 10m 00s)"


def test_long_query_threshold_is_an_option() -> None:
    rows = [running(1, "active", 2.5, 2.5)]
    assert not troubleshoot.check_long_queries(rows, TH).flagged
    assert troubleshoot.check_long_queries(rows, Thresholds(long_query_seconds=2)).flagged


def test_slow_statements_flag_a_mean_over_the_threshold() -> None:
    rows = [{"mean_ms": 1500.0, "query": "SELECT a"}, {"mean_ms": 999.9, "query": "SELECT b"}]
    sec = troubleshoot.check_slow_statements(rows, TH)
    assert sec.flagged and [r["query"] for r in sec.flagged_rows] == ["SELECT a"]
    assert "EXPLAIN (ANALYZE, BUFFERS)" in sec.advice
    assert not troubleshoot.check_slow_statements(rows[1:], TH).flagged
    assert not troubleshoot.check_slow_statements([], TH).flagged


@pytest.mark.parametrize(("ratio", "dead", "flagged"), [
    (0.5, 20000, True), (0.2, 10000, True), (0.19, 50000, False), (0.9, 9999, False),
    (None, 0, False),
])
def test_bloat_needs_both_the_ratio_and_enough_dead_tuples(
        ratio: float | None, dead: int, flagged: bool) -> None:
    rows = [{"table_name": "agent_heartbeats_p20260101", "dead_tuple_ratio": ratio,
             "dead_tuples": dead}]
    sec = troubleshoot.check_bloat(rows, TH)
    assert sec.flagged is flagged
    assert len(sec.flagged_rows) == int(flagged)
    if flagged:
        assert "VACUUM (ANALYZE)" in sec.advice


def disk(free: int, size: int = 1000) -> Disk:
    return Disk("/var/lib/postgresql/15/main", "/dev/sda1", "/", size, size - free, free)


def test_disk_flags_less_free_space_than_the_threshold() -> None:
    assert not troubleshoot.check_disk(disk(150), TH).flagged
    sec = troubleshoot.check_disk(disk(149), TH)
    assert sec.flagged and "pg_stat_archiver" in sec.advice
    assert sec.rows[0]["free_percent"] == pytest.approx(14.9)


def test_pgbouncer_flags_waiting_clients() -> None:
    pools = [{"database": "db", "user": "u", "clients_waiting": 0, "max_wait_seconds": 0.0},
             {"database": "db", "user": "v", "clients_waiting": 3, "max_wait_seconds": 2.5}]
    sec = troubleshoot.check_pgbouncer(pools, TH)
    assert sec.flagged and [p["user"] for p in sec.flagged_rows] == ["v"]
    assert sec.summary == "3 client(s) waiting for a server connection, longest 2.5s"
    assert not troubleshoot.check_pgbouncer(pools[:1], TH).flagged


def test_sizes_are_information_only() -> None:
    sec = troubleshoot.check_sizes([{"database_name": "background_agents", "size_bytes": 2048}],
                                   [{"table_name": "agents", "total_bytes": 1024}])
    assert not sec.flagged
    assert sec.summary == "background_agents 2.0 KiB"
    assert [r["kind"] for r in sec.rows] == ["database", "table"]


def test_render_shows_flagged_sections_with_their_advice_and_unchecked_ones() -> None:
    long = troubleshoot.check_long_queries([running(7, "active", 900, 900)], TH)
    broken = troubleshoot.Section("slow_statements", "Slowest statements",
                                  error="relation \"pg_stat_statements\" does not exist")
    result = {"host": "db1", "address": "10.0.0.1", "role": "primary", "flagged": True,
              "sections": [asdict(long), asdict(broken)]}
    console = Console(record=True, width=200)
    console.print(troubleshoot.render_host(result))
    out = console.export_text()
    assert "db1 (10.0.0.1) — primary: problems found" in out
    assert "✗ Long-running queries (over 10m 00s)" in out and "pg_cancel_backend" in out
    assert "SELECT pg_sleep(1000)" in out and "15m 00s" in out
    assert "? Slowest statements: could not check: relation" in out
