"""bgdb.sqlite_migration.mapping: detection by name, override files, and the one-line errors
for tables the mapping cannot place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bgdb.sqlite_migration import mapping
from bgdb.sqlite_migration.mapping import ROWID, MappingError, SourceTable


def resolve(*tables: SourceTable, unmapped: str = "error",
            override: dict[str, object] | None = None) -> mapping.Resolution:
    m = mapping.merge(mapping.DEFAULT_MAPPING, override) if override else \
        mapping.effective_mapping(None)
    return mapping.resolve(m, list(tables), unmapped)


def test_default_mapping_is_valid_and_covers_every_table() -> None:
    mapping.validate_mapping(mapping.DEFAULT_MAPPING)
    assert set(mapping.DEFAULT_MAPPING["tables"]) == set(mapping.ORDER)


def test_tables_and_columns_are_found_by_name_case_and_spelling() -> None:
    res = resolve(SourceTable("Heartbeats", ("ID", "agentId", "TS", "Status", "Data")),
                  SourceTable("AGENTS", ("agent_id", "Name", "agent_type")))
    assert not res.errors
    by_target = {p.target: p for p in res.plans}
    hb = by_target["agent_heartbeats"]
    assert hb.source == "Heartbeats"
    # error_count has no SQLite column: left out, PostgreSQL's default applies.
    assert {c.target: c.source for c in hb.columns} == {
        "id": "ID", "agent_id": "agentId", "timestamp": "TS", "state": "Status",
        "metrics": "Data"}
    # agents first (others reference it), whatever the SQLite order
    assert [p.target for p in res.plans] == ["agents", "agent_heartbeats"]
    agents = by_target["agents"]
    assert agents.column("id").source == ROWID  # type: ignore[union-attr]
    assert agents.column("type").source == "agent_type"  # type: ignore[union-attr]


def test_unexpected_columns_stop_with_one_clear_line() -> None:
    res = resolve(SourceTable("heartbeats", ("agent_id", "timestamp", "cpu", "mood")))
    assert res.plans == []
    assert res.errors == [
        "heartbeats -> agent_heartbeats: unexpected column(s) cpu, mood: map or ignore them in"
        " a mapping file (--mapping), or pass --unmapped keep (into agent_heartbeats.metrics)"
        " or --unmapped ignore"]


def test_unmapped_keep_and_ignore() -> None:
    table = SourceTable("heartbeats", ("agent_id", "timestamp", "cpu"))
    kept = resolve(table, unmapped="keep").plans[0]
    assert kept.extra_columns == ("cpu",) and kept.extras == "metrics"
    assert "metrics" in kept.copy_columns
    ignored = resolve(table, unmapped="ignore").plans[0]
    assert ignored.ignored == ("cpu",) and "cpu" not in ignored.source_columns


def test_missing_required_column_is_an_error() -> None:
    res = resolve(SourceTable("heartbeats", ("agent_id", "status")))
    assert len(res.errors) == 1
    assert res.errors[0].startswith("heartbeats -> agent_heartbeats: no SQLite column for"
                                    " required timestamp (looked for timestamp, ts, time,")


def test_two_candidate_tables_are_ambiguous() -> None:
    res = resolve(SourceTable("heartbeats", ("agent_id", "timestamp")),
                  SourceTable("agent_heartbeats", ("agent_id", "timestamp")))
    assert res.errors and "could all be agent_heartbeats" in res.errors[0]


def test_other_tables_are_noted_not_migrated() -> None:
    res = resolve(SourceTable("tasks", ("id",)), SourceTable("sqlite_sequence", ("name", "seq")))
    assert res.notes == ["tasks: not migrated (no PostgreSQL table for it; map it with"
                         " tables.<target>.source)"]


def test_without_rowid_table_is_refused() -> None:
    res = resolve(SourceTable("system_state", ("key", "value"), without_rowid=True))
    assert res.errors == ["system_state: a WITHOUT ROWID table is not supported (the migration"
                          " resumes by rowid)"]


def test_override_file_json_and_toml(tmp_path: Path) -> None:
    toml = tmp_path / "map.toml"
    toml.write_text('''
[tables.agent_heartbeats]
source = "hb_log"
ignore = ["legacy"]
[tables.agent_heartbeats.columns]
timestamp = "logged"
"metrics.cpu" = {from = "cpu", type = "float"}
error_count = false
''')
    js = tmp_path / "map.json"
    js.write_text(json.dumps({"tables": {"agent_heartbeats": {
        "source": "hb_log", "ignore": ["legacy"],
        "columns": {"timestamp": "logged", "metrics.cpu": {"from": "cpu", "type": "float"},
                    "error_count": False}}}}))
    table = SourceTable("hb_log", ("agent_id", "logged", "cpu", "legacy", "error_count"))
    for path in (toml, js):
        m = mapping.effective_mapping(path)
        res = mapping.resolve(m, [table], "error")
        # error_count is unmapped by the override: the SQLite column is then unexpected.
        assert res.errors and "unexpected column(s) error_count" in res.errors[0]
        res = mapping.resolve(m, [table], "ignore")
        plan = res.plans[0]
        cols = {(c.target, c.key): (c.source, c.type) for c in plan.columns}
        assert cols[("timestamp", None)] == ("logged", "timestamp")  # type kept from default
        assert cols[("metrics", "cpu")] == ("cpu", "float")
        assert ("error_count", None) not in cols
        assert plan.ignored == ("legacy", "error_count")


@pytest.mark.parametrize(("override", "message"), [
    ({"tables": {"nope": {}}}, "mapping: tables.nope: unknown target table"),
    ({"tables": {"agents": {"colums": {}}}}, "mapping: tables.agents: unknown key(s) colums"),
    ({"tables": {"agents": {"columns": {"agent_id": {"type": "uuid"}}}}},
     "mapping: tables.agents.columns.agent_id.type: 'uuid' is not one of"),
    ({"tables": {"agents": {"columns": {"colour": "c"}}}},
     "mapping: tables.agents.columns.colour: agents has no column 'colour'"),
    ({"tables": {"agents": {"columns": {"name.x": "c"}}}},
     "mapping: tables.agents.columns.name.x: 'name' is not a json column"),
    ({"tables": {"agents": {"columns": {"type": {"if_null": "$now"}}}}},
     "mapping: tables.agents.columns.type.if_null: '$now': the $ forms are"),
    ({"tables": {"agents": {"extras": "name"}}},
     "mapping: tables.agents.extras: 'name' is not a json column of the table"),
    ({"rules": {}}, "mapping: unknown top-level key(s) rules"),
    ({"tables": {"agents": {"columns": {"id": False}}}},
     "mapping: tables.agents.columns.id: ids are kept"),
])
def test_bad_overrides_name_the_key(override: dict[str, object], message: str) -> None:
    with pytest.raises(MappingError) as err:
        mapping.merge(mapping.DEFAULT_MAPPING, override)
    assert str(err.value).startswith(message)


def test_unreadable_override_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[tables\n")
    with pytest.raises(MappingError, match=r"bad.toml: not valid TOML"):
        mapping.effective_mapping(bad)
    with pytest.raises(MappingError, match=r"missing.json: No such file"):
        mapping.effective_mapping(tmp_path / "missing.json")


def test_plan_summary_reads_like_the_mapping() -> None:
    plan = resolve(SourceTable("heartbeats", ("id", "agent_id", "ts"))).plans[0]
    assert mapping.plan_summary(plan) == \
        "agent_heartbeats <- heartbeats: id, agent_id, timestamp<-ts"


# The seed's tables (../shared/seed.txt), column by column.
SEED_TABLES = {
    "agents": ("agent_id", "state", "started_at", "stopped_at", "config", "metadata",
               "created_at", "updated_at"),
    "agent_heartbeats": ("id", "agent_id", "timestamp", "state", "error_count", "metrics",
                         "created_at"),
    "performance_metrics": ("id", "agent_id", "metric_name", "value", "unit", "timestamp",
                            "metadata"),
    "system_state": ("id", "key", "value", "updated_at", "updated_by"),
    "system_events": ("id", "event_type", "event_data", "agent_id", "timestamp", "severity"),
    "help_requests": ("id", "request_id", "user_id", "content", "context", "status", "priority",
                      "created_at", "updated_at"),
    "help_responses": ("id", "request_id", "response_id", "content", "confidence_score",
                       "sources", "generated_at", "agent_id"),
    "agent_communications": ("id", "from_agent", "to_agent", "message_type", "content",
                             "timestamp", "status"),
    "llm_conversations": ("id", "conversation_id", "agent_id", "prompt", "response", "model",
                          "tokens_used", "cost", "timestamp", "metadata"),
}
# Where the PostgreSQL column refuses a NULL (ours NOT NULL, or the partition key): the only
# columns whose NULL becomes something else (or rejects the row).
NOT_NULL_IN_POSTGRES = {
    ("agents", "state"), ("performance_metrics", "metric_name"),
    ("performance_metrics", "timestamp"), ("agent_heartbeats", "timestamp"),
    ("system_events", "timestamp"), ("system_events", "event_type"), ("system_state", "key"),
    ("help_requests", "request_id"), ("help_requests", "user_id"),
    ("help_requests", "content"), ("help_responses", "request_id"),
    ("help_responses", "response_id"), ("help_responses", "content"),
    ("agent_communications", "message_type"), ("llm_conversations", "conversation_id"),
}


def test_seed_tables_map_by_identity_and_keep_nulls() -> None:
    res = resolve(*(SourceTable(t, cols) for t, cols in SEED_TABLES.items()))
    assert not res.errors and not res.notes
    plans = {p.target: p for p in res.plans}
    assert set(plans) == set(SEED_TABLES)
    for table, cols in SEED_TABLES.items():
        plan = plans[table]
        assert plan.source == table and plan.extra_columns == () and plan.ignored == ()
        by_target = {c.target: c for c in plan.columns if c.key is None}
        for col in cols:
            assert by_target[col].source == col, (table, col)  # every seed column: itself
            if (table, col) not in NOT_NULL_IN_POSTGRES and col != "id":
                assert by_target[col].if_null is None, (table, col)  # NULL stays NULL
        # Nothing else is written from the file (our columns keep PostgreSQL's defaults).
        assert {c.source for c in plan.columns if c.key is None} <= {*cols, None, ROWID}
    assert plans["agents"].column("id").source == ROWID  # type: ignore[union-attr]
    assert plans["performance_metrics"].column("value").type == "numeric"  # type: ignore[union-attr]
