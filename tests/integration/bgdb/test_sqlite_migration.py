"""bgdb-migrate-sqlite / bgdb-validate-migration / bgdb-setup-postgresql against a real
PostgreSQL: SQLite files the tests build (every legacy form, bad files) migrated into a scratch
database with the schema applied (`migrated_dsn`), then checked row by row and validated."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bgdb.migrate import DEFAULT_DIR, discover
from bgdb.sqlite_migration import migrate, sample, setup, validate

LEDGER = "bgdb_sqlite_migration"
T = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
EPOCH = int(T.timestamp())

# The seed's tables as the agents created them in SQLite (../shared/seed.txt; SQLite keeps the
# declared types only as affinities).
SEED_SCHEMA = """
CREATE TABLE agents (agent_id VARCHAR(255) PRIMARY KEY, state VARCHAR(50) NOT NULL,
                     started_at TIMESTAMPTZ, stopped_at TIMESTAMPTZ, config JSONB, metadata JSONB,
                     created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
CREATE TABLE agent_heartbeats (id INTEGER PRIMARY KEY AUTOINCREMENT,
                               agent_id VARCHAR(255) NOT NULL, timestamp TIMESTAMPTZ NOT NULL,
                               state VARCHAR(50), error_count INTEGER DEFAULT 0, metrics JSONB,
                               created_at TIMESTAMPTZ);
CREATE TABLE performance_metrics (id INTEGER PRIMARY KEY AUTOINCREMENT,
                                  agent_id VARCHAR(255) NOT NULL,
                                  metric_name VARCHAR(255) NOT NULL, value NUMERIC,
                                  unit VARCHAR(50), timestamp TIMESTAMPTZ, metadata JSONB);
CREATE TABLE system_state (id INTEGER PRIMARY KEY AUTOINCREMENT, key VARCHAR(255) UNIQUE NOT NULL,
                           value JSONB, updated_at TIMESTAMPTZ, updated_by VARCHAR(255));
CREATE TABLE system_events (id INTEGER PRIMARY KEY AUTOINCREMENT,
                            event_type VARCHAR(100) NOT NULL, event_data JSONB,
                            agent_id VARCHAR(255), timestamp TIMESTAMPTZ,
                            severity VARCHAR(20) DEFAULT 'INFO');
CREATE TABLE help_requests (id INTEGER PRIMARY KEY AUTOINCREMENT,
                            request_id VARCHAR(255) UNIQUE NOT NULL, user_id VARCHAR(255) NOT NULL,
                            content TEXT NOT NULL, context JSONB, status VARCHAR(50),
                            priority VARCHAR(20), created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
CREATE TABLE help_responses (id INTEGER PRIMARY KEY AUTOINCREMENT,
                             request_id VARCHAR(255) NOT NULL,
                             response_id VARCHAR(255) UNIQUE NOT NULL, content TEXT NOT NULL,
                             confidence_score NUMERIC, sources JSONB, generated_at TIMESTAMPTZ,
                             agent_id VARCHAR(255));
CREATE TABLE agent_communications (id INTEGER PRIMARY KEY AUTOINCREMENT,
                                   from_agent VARCHAR(255) NOT NULL,
                                   to_agent VARCHAR(255) NOT NULL,
                                   message_type VARCHAR(100) NOT NULL, content JSONB,
                                   timestamp TIMESTAMPTZ, status VARCHAR(50));
CREATE TABLE llm_conversations (id INTEGER PRIMARY KEY AUTOINCREMENT,
                                conversation_id VARCHAR(255) NOT NULL, agent_id VARCHAR(255),
                                prompt TEXT NOT NULL, response TEXT, model VARCHAR(100),
                                tokens_used INTEGER, cost NUMERIC, timestamp TIMESTAMPTZ,
                                metadata JSONB);
"""

# (agent_id, timestamp as stored, state, metrics, error_count) -> what PostgreSQL must hold.
HEARTBEATS: list[tuple[Any, ...]] = [
    ("agent-a", "2024-01-02T03:04:05Z", "running", '{"cpu_usage": 12.5}', 0),     # ISO, Z
    ("agent-a", "2024-01-02T05:04:05+02:00", "running", '{"cpu_usage": 1e2}', 1),  # offset
    ("agent-a", "2024-01-02T03:04:05", "running", "{}", None),       # no zone, NULL count
    ("agent-b", "2024-01-02 03:04:05", "degraded", "{not json", 2),  # space, invalid JSON
    ("agent-b", EPOCH, "running", None, 0),                         # epoch integer, NULL json
    ("agent-b", EPOCH + 0.5, "running", "[1, 2]", 0),               # epoch real
    ("ghost", "2024-01-02 03:04:05", "running", "{}", 0),           # unknown agent
    ("agent-a", "someday", "running", "{}", 0),                     # no timestamp: rejected
]


def build_legacy_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(SEED_SCHEMA)
    conn.executemany(
        "INSERT INTO agents (agent_id, state, started_at, stopped_at, config, metadata,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [("agent-a", "running", EPOCH, None, '{"pool": 1}', '{"region": "eu"}',
          "2024-01-01 00:00:00", "2024-01-02T03:04:05Z"),
         ("agent-b", "idle", None, None, "not json", None, None, None)])
    conn.executemany("INSERT INTO agent_heartbeats (agent_id, timestamp, state, metrics,"
                     " error_count) VALUES (?, ?, ?, ?, ?)", HEARTBEATS)
    conn.executemany(
        "INSERT INTO performance_metrics (agent_id, metric_name, value, unit, timestamp,"
        " metadata) VALUES (?, ?, ?, ?, ?, ?)",
        [("agent-a", "cpu_usage", 25.5, "%", EPOCH, '{"core": 0}'),
         ("agent-b", "queue_depth", "7", None, EPOCH + 0.25, None),
         ("agent-a", "cpu_usage", None, "%", EPOCH, None)])  # the seed allows a NULL value
    conn.executemany(
        "INSERT INTO system_events (event_type, severity, agent_id, event_data, timestamp)"
        " VALUES (?, ?, ?, ?, ?)",
        [("task_failed", "ERROR", "agent-a", '{"task": 1}', "2024-01-02 03:04:05"),
         ("restart", None, None, '{"why": "oom"}', EPOCH),
         ("task_done", "INFO", "nobody", None, EPOCH)])  # an agent never registered
    conn.executemany("INSERT INTO system_state (key, value, updated_at, updated_by)"
                     " VALUES (?, ?, ?, ?)",
                     [("leader", '"agent-a"', "2024-01-02T03:04:05Z", "agent-a"),
                      ("mode", "fast", None, None)])
    conn.executemany(
        "INSERT INTO help_requests (request_id, user_id, content, context, status, priority,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [("req-1", "user-1", "please review", '{"pr": 7}', "pending", "high",
          "2024-01-02 03:04:05")])
    conn.executemany(
        "INSERT INTO help_responses (request_id, response_id, content, confidence_score,"
        " sources, generated_at, agent_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [("req-1", "resp-1", "looks good", 0.9, '["doc-1"]', "2024-01-02 03:04:05", "agent-b"),
         ("req-99", "resp-2", "orphan", None, None, None, "agent-b")])  # orphan: rejected
    conn.executemany(
        "INSERT INTO agent_communications (from_agent, to_agent, message_type, content, status,"
        " timestamp) VALUES (?, ?, ?, ?, ?, ?)",
        [("agent-a", "agent-b", "ping", '{"n": 1}', "sent", "2024-01-02 03:04:05"),
         ("agent-b", "nobody", "broadcast", "hello", None, EPOCH)])
    conn.executemany(
        "INSERT INTO llm_conversations (conversation_id, agent_id, prompt, response, model,"
        " tokens_used, cost, timestamp, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [("conv-1", "agent-a", "hi", "hello", "m1", 8, 0.0001234, "2024-01-02T03:04:05Z",
          '{"temperature": 0}'),
         ("conv-1", "nobody", "again", None, None, None, None, None, None)])
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    return build_legacy_db(tmp_path / "shared_state.db")


def run_migrate(dsn: str, source: Path, *extra: str) -> int:
    # --premake-days 0: these rows are from 2024, no partition of the last 30 days would take
    # them (the large-file test covers the partitions).
    return migrate.main(["--source", str(source), "--target", dsn, "--no-progress",
                         "--premake-days", "0", *extra])


def run_validate(dsn: str, source: Path, *extra: str) -> int:
    return validate.main(["--source", str(source), "--target", dsn, "--no-progress", *extra])


def rows(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def counts(dsn: str) -> dict[str, int]:
    out = {}
    for table in ("agents", "agent_heartbeats", "performance_metrics", "system_events",
                  "system_state", "help_requests", "help_responses", "agent_communications",
                  "llm_conversations"):
        out[table] = rows(dsn, f"SELECT count(*) FROM {table}")[0][0]
    return out


def ledger_exists(dsn: str) -> bool:
    return rows(dsn, "SELECT to_regnamespace(%s) IS NOT NULL", LEDGER)[0][0]


# ------------------------------------------------------------------------------------------------


def test_every_legacy_form_is_migrated_and_validated(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_migrate(migrated_dsn, legacy) == 0
    out = capsys.readouterr().out
    assert "placeholder agents created (1): ghost" in out
    assert list(legacy.parent.glob("shared_state.db.*.bak")), "no backup was made"

    hb = rows(migrated_dsn, "SELECT id, agent_id, timestamp, state, metrics, error_count"
                            " FROM agent_heartbeats ORDER BY id")
    assert hb == [
        (1, "agent-a", T, "running", {"cpu_usage": 12.5}, 0),
        (2, "agent-a", T, "running", {"cpu_usage": 100}, 1),
        (3, "agent-a", T, "running", {}, None),              # NULL error_count kept
        (4, "agent-b", T, "degraded", "{not json", 2),       # invalid JSON kept as a string
        (5, "agent-b", T, "running", None, 0),               # NULL JSON kept
        (6, "agent-b", datetime.fromtimestamp(EPOCH + 0.5, UTC), "running", [1, 2], 0),
        (7, "ghost", T, "running", {}, 0),
    ]  # row 8 (no timestamp) is rejected, kept in the issues table
    agents = {r[0]: r[1:] for r in rows(
        migrated_dsn, "SELECT agent_id, id, name, type, state, config, metadata, started_at,"
                      " created_at, updated_at FROM agents")}
    # The seed's agents have no id (agent_id is their key): the SQLite rowid is the id; no
    # name (readers show the agent_id), our type's default.
    assert agents["agent-a"] == (1, None, "generic", "running", {"pool": 1}, {"region": "eu"},
                                 T, datetime(2024, 1, 1, tzinfo=UTC), T)
    assert agents["agent-b"] == (2, None, "generic", "idle", "not json", None, None, None,
                                 None)
    assert agents["ghost"][2:4] == ("unknown", "unknown")
    assert agents["ghost"][5]["bgdb_placeholder"] is True
    assert agents["ghost"][0] > 2  # from the advanced sequence, not a migrated id
    assert set(agents) == {"agent-a", "agent-b", "ghost"}  # no placeholder for events & co.
    assert rows(migrated_dsn, "SELECT metric_name, value, unit, timestamp, metadata"
                              " FROM performance_metrics ORDER BY id") == [
        ("cpu_usage", Decimal("25.5"), "%", T, {"core": 0}),
        ("queue_depth", Decimal("7"), None, datetime.fromtimestamp(EPOCH + 0.25, UTC), None),
        ("cpu_usage", None, "%", T, None)]  # the NULL value is kept, not rejected
    assert rows(migrated_dsn, "SELECT severity, agent_id, event_data FROM system_events"
                              " ORDER BY id") == [
        ("ERROR", "agent-a", {"task": 1}), (None, None, {"why": "oom"}), ("INFO", "nobody", None)]
    assert rows(migrated_dsn, "SELECT key, value, updated_at, updated_by FROM system_state"
                              " ORDER BY id") == [
        ("leader", "agent-a", T, "agent-a"), ("mode", "fast", None, None)]
    assert rows(migrated_dsn, "SELECT request_id, user_id, content, context, status, priority,"
                              " priority_rank, created_at FROM help_requests") == [
        ("req-1", "user-1", "please review", {"pr": 7}, "pending", "high", 3, T)]
    assert rows(migrated_dsn, "SELECT request_id, response_id, content, confidence_score,"
                              " sources, generated_at, agent_id FROM help_responses") == [
        ("req-1", "resp-1", "looks good", Decimal("0.9"), ["doc-1"], T, "agent-b")]
    assert rows(migrated_dsn, "SELECT from_agent, to_agent, content, status, timestamp"
                              " FROM agent_communications ORDER BY id") == [
        ("agent-a", "agent-b", {"n": 1}, "sent", T), ("agent-b", "nobody", "hello", None, T)]
    assert rows(migrated_dsn, "SELECT conversation_id, agent_id, model, tokens_used,"
                              " tokens_input, tokens_output, cost, timestamp, metadata"
                              " FROM llm_conversations ORDER BY id") == [
        ("conv-1", "agent-a", "m1", 8, 0, 0, Decimal("0.0001234"), T, {"temperature": 0}),
        ("conv-1", "nobody", None, None, 0, 0, None, None, None)]

    issues = rows(migrated_dsn, f"SELECT target_table, source_rowid, kind, column_name, detail"
                                f" FROM {LEDGER}.issues ORDER BY target_table, source_rowid, kind")
    assert ("agent_heartbeats", 8, "rejected", None,
            'timestamp: cannot convert "someday"') in issues
    assert ("agent_heartbeats", 7, "placeholder_agent", "agent_id", "ghost") in issues
    assert ("agent_heartbeats", 4, "invalid_json", "metrics",
            "invalid JSON kept as a JSON string") in issues
    assert ("help_responses", 2, "rejected", None,
            "unknown help request 'req-99' in request_id") in issues
    assert not [i for i in issues if i[0] == "performance_metrics"]  # NULL is no issue
    raw = rows(migrated_dsn, f"SELECT raw FROM {LEDGER}.issues WHERE kind = 'rejected'"
                             " AND target_table = 'agent_heartbeats'")[0][0]
    assert json.loads(raw)["state"] == "running"  # the whole SQLite row is kept

    assert run_validate(migrated_dsn, legacy) == 0
    report = capsys.readouterr().out
    assert report.splitlines()[-1].startswith("PASS: 9 table(s) match")
    # NULLs are counted per column, the same on both sides.
    nulls = {line.split(":")[0].strip(): line.split("NULL values kept: ")[1]
             for line in report.splitlines() if "NULL values kept" in line}
    assert "value 1" in nulls["performance_metrics"].split(", ")
    assert "metrics 1" in nulls["agent_heartbeats"].split(", ")
    assert "error_count 1" in nulls["agent_heartbeats"].split(", ")


def test_second_run_copies_nothing_and_sequences_are_past_migrated_ids(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_migrate(migrated_dsn, legacy, "--no-backup") == 0
    before = counts(migrated_dsn)
    issues = rows(migrated_dsn, f"SELECT count(*) FROM {LEDGER}.issues")[0][0]
    capsys.readouterr()
    assert run_migrate(migrated_dsn, legacy, "--no-backup") == 0
    assert "done: 0 rows" in capsys.readouterr().out
    assert counts(migrated_dsn) == before
    assert rows(migrated_dsn, f"SELECT count(*) FROM {LEDGER}.issues")[0][0] == issues
    # New rows written by the agents get ids after the migrated ones.
    new_id = rows(migrated_dsn, "INSERT INTO agent_heartbeats (agent_id) VALUES ('agent-a')"
                                " RETURNING id")[0][0]
    assert new_id > 7  # the last migrated id (row 8 was rejected)
    assert run_validate(migrated_dsn, legacy) == 0  # the new row is outside the migrated ids


def test_rows_added_to_sqlite_later_are_picked_up_by_a_rerun(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_migrate(migrated_dsn, legacy, "--no-backup") == 0
    with sqlite3.connect(legacy) as conn:
        conn.execute("INSERT INTO agent_heartbeats (agent_id, timestamp, metrics) VALUES"
                     " ('agent-b', '2024-02-01 00:00:00', '{}')")
    assert run_validate(migrated_dsn, legacy) == 1
    assert "1 SQLite row(s) added after the migration" in capsys.readouterr().out
    assert run_migrate(migrated_dsn, legacy, "--no-backup") == 0
    assert run_validate(migrated_dsn, legacy) == 0


def test_dry_run_reports_and_writes_nothing(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_migrate(migrated_dsn, legacy, "--dry-run") == 0
    out = capsys.readouterr().out
    # The seed's names map to themselves.
    assert "map agent_heartbeats <- agent_heartbeats: id, agent_id, timestamp, state," \
        " metrics, error_count" in out
    assert "placeholder agents to create (1): ghost" in out
    line = next(x for x in out.splitlines() if x.startswith("agent_heartbeats "))
    assert line.split()[2:6] == ["8", "0", "7", "1"]  # sqlite rows, before, would copy, rejected
    assert out.splitlines()[-1].startswith("dry run: nothing written")
    assert set(counts(migrated_dsn).values()) == {0}
    assert not ledger_exists(migrated_dsn)
    assert not list(legacy.parent.glob("*.bak"))


def test_unknown_agents_can_be_skipped_instead(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_migrate(migrated_dsn, legacy, "--unknown-agents", "skip", "--no-backup") == 0
    assert rows(migrated_dsn, "SELECT count(*) FROM agents WHERE agent_id = 'ghost'") == [(0,)]
    assert rows(migrated_dsn, f"SELECT detail FROM {LEDGER}.issues WHERE source_rowid = 7"
                              " AND target_table = 'agent_heartbeats'") == [
        ("unknown agent 'ghost' in agent_id (--unknown-agents skip)",)]
    assert run_validate(migrated_dsn, legacy) == 0


def test_a_failed_batch_rolls_back_and_the_run_resumes(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A failure that is no fault of the rows (here: a trigger raising on id 5) stops the run;
    # ENABLE ALWAYS so that it fires whatever session_replication_role the migration uses.
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION fail_on_5() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.id = 5 THEN RAISE EXCEPTION 'injected failure'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER fail_on_5 BEFORE INSERT ON agent_heartbeats
                FOR EACH ROW EXECUTE FUNCTION fail_on_5();
            ALTER TABLE agent_heartbeats ENABLE ALWAYS TRIGGER fail_on_5;""")
    assert run_migrate(migrated_dsn, legacy, "--batch-size", "2", "--no-backup") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: PostgreSQL: injected failure")
    # Batches (1,2) and (3,4) are committed with their ledger entry; (5,6) rolled back whole.
    assert rows(migrated_dsn, "SELECT id FROM agent_heartbeats ORDER BY id") == [
        (1,), (2,), (3,), (4,)]
    assert rows(migrated_dsn, f"SELECT last_rowid, rows_copied FROM {LEDGER}.tables"
                              " WHERE target_table = 'agent_heartbeats'") == [(4, 4)]
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("DROP TRIGGER fail_on_5 ON agent_heartbeats")
    assert run_migrate(migrated_dsn, legacy, "--batch-size", "2", "--no-backup") == 0
    assert [r[0] for r in rows(migrated_dsn, "SELECT id FROM agent_heartbeats ORDER BY id")] \
        == [1, 2, 3, 4, 5, 6, 7]
    assert run_validate(migrated_dsn, legacy) == 0


def test_rows_postgresql_refuses_are_rejected_one_by_one(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An agent already registered in PostgreSQL under the same agent_id: that row cannot be
    # copied (unique violation); the batch is redone row by row and only that row is rejected.
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO agents (id, agent_id, name, type) VALUES (100, 'agent-b',"
                     " 'B', 'worker')")
    assert run_migrate(migrated_dsn, legacy, "--no-backup") == 0
    detail = rows(migrated_dsn, f"SELECT detail FROM {LEDGER}.issues WHERE kind = 'rejected'"
                                " AND target_table = 'agents'")
    assert len(detail) == 1 and detail[0][0].startswith(
        "PostgreSQL refused the row: duplicate key value violates unique constraint")
    agents = rows(migrated_dsn, "SELECT agent_id, id FROM agents ORDER BY id")
    assert ("agent-a", 1) in agents and ("agent-b", 100) in agents
    # The placeholder did not take the refused row's id: sequences pass every SQLite id.
    assert [a for a in agents if a[0] == "ghost"][0][1] > 2
    assert counts(migrated_dsn)["agent_heartbeats"] == 7
    assert run_validate(migrated_dsn, legacy) == 0


def test_validation_names_what_differs(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_migrate(migrated_dsn, legacy, "--no-backup") == 0
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("UPDATE agent_heartbeats SET error_count = 9 WHERE id = 2")
        conn.execute("DELETE FROM performance_metrics WHERE id = 1")
    capsys.readouterr()
    assert run_validate(migrated_dsn, legacy) == 1
    out = capsys.readouterr().out
    assert "agent_heartbeats: id 2 differs: error_count (sqlite '1', postgresql '9')" in out
    assert "performance_metrics: missing in PostgreSQL: id 1" in out
    assert out.splitlines()[-1] == ("FAIL: 2 of 9 table(s) differ: agent_heartbeats,"
                                    " performance_metrics")
    hb = next(x for x in out.splitlines() if x.startswith("agent_heartbeats "))
    assert "DIFFERS" in hb and hb.endswith("FAIL")


def test_validate_without_a_migration_is_bad_input(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate(migrated_dsn, legacy) == 2
    assert "no migration of this source is recorded" in capsys.readouterr().err


def test_null_metric_values_are_kept_and_counted(
        migrated_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A file as the agents write it (sample.py: the seed's tables, one metric value in 50 NULL):
    # every row arrives, the NULLs stay NULL, and both reports count them.
    db = tmp_path / "shared_state.db"
    made = sample.generate(db, heartbeats=5_000, agents=10)
    nulls = sample.null_metric_values(made["performance_metrics"])
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) - count(value) FROM performance_metrics"
                            ).fetchone() == (nulls,)
    assert nulls == 10
    assert run_migrate(migrated_dsn, db, "--no-backup") == 0
    assert rows(migrated_dsn, "SELECT count(*), count(value) FROM performance_metrics") == [
        (made["performance_metrics"], made["performance_metrics"] - nulls)]
    assert rows(migrated_dsn, f"SELECT count(*) FROM {LEDGER}.issues"
                              " WHERE target_table = 'performance_metrics'") == [(0,)]
    capsys.readouterr()
    assert run_validate(migrated_dsn, db) == 0
    report = capsys.readouterr().out.splitlines()
    assert report[-1].startswith("PASS: 5 table(s) match")
    line = next(x for x in report if x.startswith("  performance_metrics: NULL values kept:"))
    assert f"value {nulls}" in line.split(": ", 2)[2].split(", ")
    # A NULL turned into something else on the PostgreSQL side fails the table, by name.
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("UPDATE performance_metrics SET value = 0"
                     " WHERE id = (SELECT min(id) FROM performance_metrics WHERE value IS NULL)")
    assert run_validate(migrated_dsn, db) == 1
    out = capsys.readouterr().out
    assert f"value {nulls} in SQLite but {nulls - 1} in PostgreSQL" in out
    assert out.splitlines()[-1].startswith("FAIL: 1 of 5 table(s) differ: performance_metrics")


# ------------------------------------------------------------------------------------------------
# Bad input: one clear line, exit 2, nothing written (no ledger, no rows, no backup).


def _locked(path: Path) -> Iterator[None]:
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def _corrupt(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(4096 * 2)
        f.write(b"\xde\xad\xbe\xef" * 1024)


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "nothing.db: no such file"),
    ("not sqlite", "shared_state.db: not a SQLite 3 database"),
    ("corrupt", "shared_state.db: the database is corrupt ("),
    ("locked", "shared_state.db: the database is locked by another process"),
    ("unexpected columns",
     "agent_heartbeats -> agent_heartbeats: unexpected column(s) cpu_load, mood:"),
])
def test_bad_input_is_one_line_and_writes_nothing(
        migrated_dsn: str, legacy: Path, case: str, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    source = legacy
    lock: Iterator[None] | None = None
    if case == "missing":
        source = legacy.parent / "nothing.db"
    elif case == "not sqlite":
        legacy.write_text("agent_id,timestamp\nagent-a,2024-01-02\n")
    elif case == "corrupt":
        _corrupt(legacy)
    elif case == "locked":
        lock = _locked(legacy)
        next(lock)
    elif case == "unexpected columns":
        with sqlite3.connect(legacy) as conn:
            conn.execute("ALTER TABLE agent_heartbeats ADD COLUMN cpu_load REAL")
            conn.execute("ALTER TABLE agent_heartbeats ADD COLUMN mood TEXT")
    try:
        code = run_migrate(migrated_dsn, source, "--busy-timeout", "0.2")
    finally:
        if lock is not None:
            next(lock, None)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {legacy.parent}/{message}") or \
        err[0].startswith(f"error: {message}"), err[0]
    assert set(counts(migrated_dsn).values()) == {0}
    assert not ledger_exists(migrated_dsn)
    assert not list(legacy.parent.glob("*.bak"))


def test_unexpected_columns_can_be_kept(
        migrated_dsn: str, legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(legacy) as conn:
        conn.execute("ALTER TABLE agent_heartbeats ADD COLUMN cpu_load REAL")
        conn.execute("UPDATE agent_heartbeats SET cpu_load = 0.5 WHERE id = 1")
    assert run_migrate(migrated_dsn, legacy, "--unmapped", "keep", "--no-backup") == 0
    assert rows(migrated_dsn, "SELECT metrics FROM agent_heartbeats WHERE id = 1") == [
        ({"cpu_usage": 12.5, "cpu_load": 0.5},)]
    assert run_validate(migrated_dsn, legacy) == 0


def test_a_mapping_file_places_other_names(
        migrated_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "odd.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE hb_log (agent TEXT, logged TEXT, cpu REAL, legacy INTEGER)")
        conn.execute("INSERT INTO hb_log VALUES ('agent-x', '2024-01-02 03:04:05', 0.25, 1)")
    mapping_file = tmp_path / "mapping.toml"
    mapping_file.write_text('[tables.agent_heartbeats]\nsource = "hb_log"\nignore = ["legacy"]\n'
                            '[tables.agent_heartbeats.columns]\ntimestamp = "logged"\n'
                            '"metrics.cpu" = {from = "cpu", type = "float"}\n')
    assert run_migrate(migrated_dsn, db, "--mapping", str(mapping_file), "--no-backup") == 0
    assert rows(migrated_dsn, "SELECT id, agent_id, timestamp, metrics FROM agent_heartbeats") \
        == [(1, "agent-x", T, {"cpu": 0.25})]
    # A resume with another mapping would mix conversions: refused.
    capsys.readouterr()
    assert run_migrate(migrated_dsn, db, "--mapping", str(mapping_file), "--no-backup",
                       "--unmapped", "keep") == 2
    assert "first migrated with other unmapped" in capsys.readouterr().err
    assert run_validate(migrated_dsn, db) == 0


# ------------------------------------------------------------------------------------------------
# Setup


def _setup_args(dsn: str, env_file: Path) -> list[str]:
    p = psycopg.conninfo.conninfo_to_dict(dsn)
    args = ["--env-file", str(env_file), "--host", str(p.get("host", "localhost")),
            "--port", str(p.get("port", 5432)), "--database", str(p["dbname"]),
            "--user", str(p["user"]), "--ssl-mode", str(p.get("sslmode", "prefer"))]
    if p.get("sslrootcert"):
        args += ["--ssl-root-cert", str(p["sslrootcert"])]
    return args


def test_setup_checks_the_target_and_writes_the_env_file(
        migrated_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The agents' connection here is the test's superuser (the only role the sandbox's pg_hba
    # lets into a scratch database); the write probe is rolled back either way.
    password = psycopg.conninfo.conninfo_to_dict(migrated_dsn).get("password")
    monkeypatch.setenv("POSTGRESQL_PASSWORD", str(password or ""))
    env_file = tmp_path / "agents" / "postgresql.env"
    env_file.parent.mkdir()
    env_file.write_text("OTHER_SETTING=kept\n")
    assert setup.main(_setup_args(migrated_dsn, env_file)) == 0
    out = capsys.readouterr().out
    applied = len(discover(DEFAULT_DIR))
    assert f"ok    schema     {applied} migration(s) applied, none pending" in out
    assert "ok    can write  inserted and read back" in out
    assert env_file.stat().st_mode & 0o777 == 0o600
    text = env_file.read_text()
    assert text.startswith("OTHER_SETTING=kept\nPOSTGRESQL_HOST=")
    assert f"POSTGRESQL_DATABASE={psycopg.conninfo.conninfo_to_dict(migrated_dsn)['dbname']}" \
        in text
    assert rows(migrated_dsn, "SELECT count(*) FROM agents") == [(0,)]  # the probe left nothing
    # The migration reads the same file (--target postgresql).
    monkeypatch.delenv("POSTGRESQL_PASSWORD")
    db = build_legacy_db(tmp_path / "shared_state.db")
    assert migrate.main(["--source", str(db), "--env-file", str(env_file), "--no-progress",
                         "--no-backup"]) == 0


def test_setup_fails_on_a_database_without_the_schema(
        scratch_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    password = psycopg.conninfo.conninfo_to_dict(scratch_dsn).get("password")
    monkeypatch.setenv("POSTGRESQL_PASSWORD", str(password or ""))
    env_file = tmp_path / "postgresql.env"
    assert setup.main(_setup_args(scratch_dsn, env_file)) == 1
    out = capsys.readouterr().out
    assert "FAIL  schema     missing agents, system_state," in out
    assert not env_file.exists()
    # --apply-migrations (with an admin connection) creates it, then everything passes.
    assert setup.main([*_setup_args(scratch_dsn, env_file), "--admin-dsn", scratch_dsn,
                       "--apply-migrations", "--app-user", "bg_agents_user"]) == 0
    assert env_file.exists()


def test_setup_reports_a_role_that_cannot_write(
        migrated_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    password = psycopg.conninfo.conninfo_to_dict(migrated_dsn).get("password")
    monkeypatch.setenv("POSTGRESQL_PASSWORD", str(password or ""))
    # The session acts as the read-only role (libpq's PGOPTIONS; the superuser may SET ROLE).
    monkeypatch.setenv("PGOPTIONS", "-c role=bg_agents_readonly")
    env_file = tmp_path / "postgresql.env"
    assert setup.main([*_setup_args(migrated_dsn, env_file), "--check-only"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  can write  permission denied for table agents" in out
    assert not env_file.exists()
