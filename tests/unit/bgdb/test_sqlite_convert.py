"""bgdb.sqlite_migration.convert: every form of legacy value, and the canonical forms that the
validation compares."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from bgdb.sqlite_migration import mapping
from bgdb.sqlite_migration.convert import (
    ConvertError,
    InvalidText,
    RowConverter,
    canon_json,
    canonical_json_loads,
    parse_json,
    to_boolean,
    to_float,
    to_integer,
    to_numeric,
    to_text,
    to_timestamp,
)
from bgdb.sqlite_migration.mapping import SourceTable

T = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
EPOCH = int(T.timestamp())  # 1704164645


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-01-02T03:04:05Z", T),                      # ISO-8601, Z
    ("2024-01-02T03:04:05+00:00", T),                 # ISO-8601, offset
    ("2024-01-02T05:04:05+02:00", T),                 # another offset
    ("2024-01-02T05:04:05+0200", T),                  # offset without colon
    ("2024-01-02T03:04:05", T),                       # no zone: UTC
    ("2024-01-02 03:04:05", T),                       # space-separated (SQLite CURRENT_TIMESTAMP)
    ("2024-01-02 03:04:05.250", T + timedelta(milliseconds=250)),
    ("2024-01-02 03:04:05 UTC", T),                   # zone word
    ("2024-01-02T03:04:05z", T),
    ("2024/01/02 03:04:05", T),                       # slashes
    ("2024-01-02", datetime(2024, 1, 2, tzinfo=UTC)),  # date only
    ("  2024-01-02 03:04:05  ", T),                   # padding
    (EPOCH, T),                                       # epoch seconds, integer
    (EPOCH + 0.5, T + timedelta(milliseconds=500)),    # epoch seconds, real
    (str(EPOCH), T),                                  # epoch as text
    (f"{EPOCH}.5", T + timedelta(milliseconds=500)),
    (EPOCH * 1000, T),                                # epoch milliseconds
    (EPOCH * 1_000_000, T),                           # epoch microseconds
    (b"2024-01-02T03:04:05Z", T),                      # blob holding text
    (None, None),
    ("", None),
])
def test_timestamps_in_every_form(value: object, expected: datetime | None) -> None:
    got = to_timestamp(value)
    assert got == expected
    if got is not None:
        assert got.tzinfo is UTC


def test_zoneless_timestamps_use_the_naive_zone() -> None:
    got = to_timestamp("2024-07-01 12:00:00", ZoneInfo("Europe/Berlin"))
    assert got == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
    # A stored zone wins over the naive one.
    assert to_timestamp("2024-07-01T12:00:00Z", ZoneInfo("Europe/Berlin")) == \
        datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", ["yesterday", "2024-13-45", "12:30", float("nan"), 1e30,
                                   InvalidText(b"\xff\xfe")])
def test_unreadable_timestamps_raise(value: object) -> None:
    with pytest.raises(ConvertError):
        to_timestamp(value)


@pytest.mark.parametrize(("value", "expected"), [
    (1, True), (0, False), ("1", True), ("0", False), ("true", True), ("False", False),
    ("yes", True), ("off", False), (1.0, True), (None, None), ("", None)])
def test_booleans(value: object, expected: bool | None) -> None:
    assert to_boolean(value) is expected


@pytest.mark.parametrize("value", [2, "maybe", -1])
def test_not_booleans(value: object) -> None:
    with pytest.raises(ConvertError):
        to_boolean(value)


def test_numbers() -> None:
    assert to_integer("42") == 42
    assert to_integer(3.0) == 3
    assert to_integer("3.0") == 3
    assert to_integer(None) is None
    for bad in ("3.5", "x", 2**31, 3.5):
        with pytest.raises(ConvertError):
            to_integer(bad)
    assert to_integer(2**40, (-(2**63), 2**63 - 1)) == 2**40
    assert to_float("1.5") == 1.5
    assert to_float(2) == 2.0
    with pytest.raises(ConvertError):
        to_float("abc")
    assert to_numeric(0.0001, 6) == Decimal("0.000100")
    assert to_numeric("1.0000005", 6) == Decimal("1.000001")  # half away from zero
    assert to_numeric("-1.0000005", 6) == Decimal("-1.000001")
    with pytest.raises(ConvertError):
        to_numeric("inf", 6)


def test_text() -> None:
    assert to_text(5) == "5"
    assert to_text(1.5) == "1.5"
    assert to_text(b"abc") == "abc"
    with pytest.raises(ConvertError):
        to_text(b"\xff")


@pytest.mark.parametrize(("value", "expected", "valid"), [
    ('{"a": 1}', {"a": 1}, True),
    ("[1, 2]", [1, 2], True),
    ('"text"', "text", True),
    ("null", None, True),
    (7, 7, True),
    ("not json", "not json", False),           # kept as a JSON string
    ("{bad", "{bad", False),
    ('{"x": NaN}', '{"x": NaN}', False),       # PostgreSQL refuses NaN/Infinity
    ('{"x": "\\u0000"}', '{"x": "\\u0000"}', False),  # and \u0000
    (float("inf"), "inf", False),
])
def test_json(value: object, expected: object, valid: bool) -> None:
    parsed, _, ok = parse_json(value)
    assert ok is valid
    assert parsed == expected


@pytest.mark.parametrize(("source", "jsonb_output"), [
    ("1e2", "100"),              # what PostgreSQL's jsonb prints for the source's number
    ("1.0", "1.0"),
    ("1.5e300", "15" + "0" * 299),
    ("1E-7", "0.0000001"),
    ("12345678901234567890", "12345678901234567890"),
    ("0.1", "0.1"),
])
def test_canonical_json_numbers_match_what_jsonb_returns(source: str, jsonb_output: str) -> None:
    a, b = canonical_json_loads(f"[{source}]"), canonical_json_loads(f"[{jsonb_output}]".encode())
    assert a == b and type(a[0]) is type(b[0])



@pytest.mark.parametrize("number", [100.0, 2.5, 1e20, 1.5e300, 1e-7, 0.1])
def test_python_made_floats_canonicalise_like_their_json(number: float) -> None:
    # Values the converter adds itself (kept columns, booleans into metadata) are written with
    # json.dumps; PostgreSQL then holds what that text says.
    assert canon_json({"x": number}) == canonical_json_loads(json.dumps({"x": number}))


def _plan(columns: tuple[str, ...], target: str = "agent_heartbeats",
          unmapped: str = "error") -> mapping.TablePlan:
    res = mapping.resolve(mapping.effective_mapping(None),
                          [SourceTable("heartbeats" if target == "agent_heartbeats" else target,
                                       columns)], unmapped)
    assert not res.errors, res.errors
    return res.plans[0]


def test_row_conversion_for_copy_and_for_checks() -> None:
    plan = _plan(("id", "agent_id", "timestamp", "status", "metrics", "error_count"))
    write = RowConverter(plan)
    check = RowConverter(plan, for_write=False)
    row = (7, 7, "agent-1", "2024-01-02 03:04:05", "running", '{"cpu": 1e2}', None)
    out = write.convert(row)
    assert out.reject is None and not out.issues
    values = dict(zip(write.out_columns, out.values, strict=True))
    assert values == {"id": 7, "agent_id": "agent-1", "timestamp": T, "state": "running",
                      # the original JSON text is written as is; a NULL error_count stays
                      # NULL (the seed's column allows it)
                      "metrics": '{"cpu": 1e2}', "error_count": None}
    checked = check.convert(row)
    assert dict(zip(check.out_columns, checked.values, strict=True))["metrics"] == {"cpu": 100}
    # The same values read back from PostgreSQL (other zone, jsonb normalised) digest equally.
    from_pg = [7, "agent-1", T.astimezone(timezone(timedelta(hours=5))), "running",
               canonical_json_loads('{"cpu": 100}'), None]
    assert check.digest(checked.values) == check.digest(from_pg)
    from_pg[5] = 0  # a NULL turned into the default is a difference
    assert check.digest(checked.values) != check.digest(from_pg)


def test_invalid_json_is_kept_and_reported() -> None:
    plan = _plan(("id", "agent_id", "timestamp", "metrics"))
    out = RowConverter(plan).convert((1, 1, "a", "2024-01-02", "{oops"))
    assert out.reject is None
    assert out.values[plan.copy_columns.index("metrics")] == json.dumps("{oops")
    assert out.issues and out.issues[0].kind == "invalid_json"
    assert out.issues[0].raw == json.dumps("{oops")


def test_missing_required_value_rejects_the_row_with_its_data() -> None:
    plan = _plan(("id", "agent_id", "timestamp", "metrics"))
    out = RowConverter(plan).convert((3, 3, "a", None, "{}"))
    assert out.reject == "timestamp is NULL"
    assert out.issues and out.issues[0].kind == "rejected"
    assert json.loads(out.issues[0].raw or "") == {
        "rowid": 3, "id": 3, "agent_id": "a", "timestamp": None, "metrics": "{}"}
    bad = RowConverter(plan).convert((4, 4, "a", "someday", "{}"))
    assert bad.reject == 'timestamp: cannot convert "someday"'


def test_unconvertible_optional_value_becomes_null_and_is_reported() -> None:
    plan = _plan(("id", "agent_id", "name", "type", "started_at"), target="agents")
    given = {"id": 1, "agent_id": "a1", "name": None, "type": None, "started_at": "not a time"}
    out = RowConverter(plan).convert((1, *(given[c] for c in plan.source_columns)))
    values = dict(zip(plan.copy_columns, out.values, strict=True))
    assert values["started_at"] is None
    assert values["name"] is None  # NULL kept: readers show the agent_id
    assert values["type"] == "generic"  # our NOT NULL column: its default's value
    assert [i.kind for i in out.issues or []] == ["bad_value"]


def test_booleans_and_unmapped_columns_fold_into_json() -> None:
    plan = _plan(("id", "agent_id", "metadata", "is_active", "owner", "score"), target="agents",
                 unmapped="keep")
    assert plan.extra_columns == ("owner", "score")
    out = RowConverter(plan).convert((1, 1, "a", '{"r": "eu"}', 1, "ops", 2.5))
    values = dict(zip(plan.copy_columns, out.values, strict=True))
    assert json.loads(values["metadata"]) == {"r": "eu", "active": True, "owner": "ops",
                                              "score": 2.5}
    # Non-object JSON is wrapped so the keys have somewhere to go (and it is reported).
    out = RowConverter(plan).convert((2, 2, "b", "[1]", 0, None, None))
    assert json.loads(dict(zip(plan.copy_columns, out.values, strict=True))["metadata"]) == {
        "_value": [1], "active": False}
    assert [i.kind for i in out.issues or []] == ["json_wrapped"]


def test_nul_characters_are_removed_and_reported() -> None:
    plan = _plan(("id", "agent_id", "timestamp", "status"))
    out = RowConverter(plan).convert((1, 1, "a", "2024-01-02", "ru\x00n"))
    assert "run" in out.values
    assert [i.kind for i in out.issues or []] == ["nul_removed"]


def test_rowid_is_the_id_when_there_is_no_id_column() -> None:
    plan = _plan(("agent_id", "timestamp"))
    assert plan.column("id") is not None and plan.column("id").source == mapping.ROWID  # type: ignore[union-attr]
    out = RowConverter(plan).convert((42, "a", "2024-01-02"))
    assert out.values[plan.copy_columns.index("id")] == 42


def test_null_metric_value_is_kept_as_null_and_values_are_exact_decimals() -> None:
    plan = _plan(("id", "agent_id", "metric_name", "value", "unit", "timestamp", "metadata"),
                 target="performance_metrics")
    conv = RowConverter(plan)
    values = [dict(zip(plan.copy_columns, conv.convert(row).values, strict=True))["value"]
              for row in [(1, 1, "a", "cpu_usage", None, "%", "2024-01-02", None),
                          (2, 2, "a", "cpu_usage", 0.1, "%", "2024-01-02", None),
                          (3, 3, "a", "cpu_usage", 7, "%", "2024-01-02", None),
                          (4, 4, "a", "cpu_usage", "2.50", "%", "2024-01-02", None)]]
    assert values == [None, Decimal("0.1"), Decimal("7"), Decimal("2.50")]
    nan = conv.convert((5, 5, "a", "cpu_usage", float("nan"), "%", "2024-01-02", None))
    assert nan.reject is None  # kept, value NULL, and said so
    assert [i.kind for i in nan.issues or []] == ["bad_value"]
