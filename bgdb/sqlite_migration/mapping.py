"""Which SQLite table and column feeds which PostgreSQL table and column.

The legacy SQLite file is loosely typed and its names vary between versions of the agents, so
every target column lists candidate source names; the first that exists in the SQLite table wins.
Names match case-insensitively, then ignoring underscores and case (`agentId` = `agent_id`).

The default mapping below is the documentation: print it with
`bgdb-migrate-sqlite --print-mapping`. Override any part of it with a JSON or TOML file
(`--mapping FILE`) of the same shape; it is merged onto the default:

    [tables.agent_heartbeats]
    source = "hb_log"                      # the SQLite table (default: first candidate found)
    ignore = ["legacy_flag"]               # SQLite columns to leave behind
    extras = "metrics"                     # json column for unmapped columns (--unmapped keep)
    [tables.agent_heartbeats.columns]
    timestamp = "ts"                       # shorthand for {from = "ts"}, keeps the default type
    "metrics.cpu" = {from = "cpu", type = "float"}   # "col.key": a key inside a JSON column
    error_count = false                    # do not map (PostgreSQL's default applies)

    [tables.llm_conversations]
    skip = true                            # do not migrate this table

Column spec fields: `from` (a name or a list of candidates; `$rowid` is SQLite's rowid),
`type` (text, integer, bigint, float, numeric, timestamp, json, boolean, auto), `scale` (numeric),
`if_null` (what a NULL - or an unconvertible value - becomes: a literal, `$reject` to leave the
row out (kept in the issues table), `$migration_time` (the first run's start), or
`$column:NAME` (another target column's value)). Without `if_null` a NULL stays NULL.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgdb.sqlite_migration import MigrationError

TYPES = frozenset({"text", "integer", "bigint", "float", "numeric", "timestamp", "json",
                   "boolean", "auto"})
ROWID = "$rowid"
REJECT = "$reject"
MIGRATION_TIME = "$migration_time"
COLUMN_PREFIX = "$column:"

# Order of migration: referenced tables first (agents, then help_requests before responses).
ORDER = ("agents", "system_state", "help_requests", "help_responses", "agent_communications",
         "llm_conversations", "agent_heartbeats", "performance_metrics", "system_events")

# Target columns with a foreign key (sql/migrations 0001 + 0004): the migration checks them
# before copying (unknown agents -> placeholder agents or skipped rows; unknown help requests ->
# skipped rows). Events, messages, responses and LLM calls of unknown agents are accepted as
# they are, as the seed's schema accepts them (no foreign key there).
REFERENCES: dict[tuple[str, str], str] = {
    ("agent_heartbeats", "agent_id"): "agents",
    ("performance_metrics", "agent_id"): "agents",
    ("help_requests", "requesting_agent_id"): "agents",
    ("help_responses", "request_id"): "help_requests",
}


def _id() -> dict[str, Any]:
    # Ids are kept (so rows keep their identity and references between tables hold); a table
    # without an id column uses SQLite's rowid, which is what an INTEGER PRIMARY KEY aliases
    # (the seed's agents table, keyed by agent_id, has no id: its rowid is the id).
    return {"from": ["id", ROWID], "type": "bigint", "if_null": REJECT}


def _ts(*names: str, if_null: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"from": list(names), "type": "timestamp"}
    if if_null is not None:
        spec["if_null"] = if_null
    return spec


def _col(type_: str, *names: str, if_null: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"from": list(names), "type": type_}
    if if_null is not None:
        spec["if_null"] = if_null
    return spec


_AGENT_REF = ("agent_id", "agent", "agent_name")
_EVENT_TS = ("timestamp", "ts", "time", "created_at", "recorded_at")

# The source is the seed's SQLite file: its tables and columns have the seed's names, which are
# the PostgreSQL names too, so every seed column maps from its own name (the first candidate) and
# its value is kept as it is - a NULL stays NULL wherever the seed's schema allows one (metric
# values, heartbeat metrics, severities, ...). `if_null` is only for our NOT NULL columns and the
# partition keys (the documented deviation: a row without a timestamp is rejected). The further
# candidates are spellings older agent versions used. Our own columns (name, type, source,
# tokens_input, ...) are filled when the file has them, else PostgreSQL's default applies.
DEFAULT_MAPPING: dict[str, Any] = {"tables": {
    "agents": {
        "source": ["agents", "agent", "agent_registry", "registered_agents"],
        "extras": "metadata",
        "columns": {
            "id": _id(),
            "agent_id": _col("text", "agent_id", "agent_uuid", "uuid"),
            "state": _col("text", "state", "status", if_null="initializing"),
            "started_at": _ts("started_at", "start_time"),
            "stopped_at": _ts("stopped_at", "stop_time"),
            "config": _col("json", "config", "configuration", "settings"),
            "metadata": _col("json", "metadata", "meta", "info"),
            "created_at": _ts("created_at", "created", "registered_at"),
            "updated_at": _ts("updated_at", "updated", "modified_at"),
            # ours
            "name": _col("text", "name", "agent_name", "display_name"),
            "type": _col("text", "type", "agent_type", "kind", if_null="generic"),
            "last_heartbeat": _ts("last_heartbeat", "last_heartbeat_at", "last_seen"),
            # SQLite booleans (0/1) that the agents kept as columns live on in metadata.
            "metadata.active": _col("boolean", "active", "is_active", "enabled"),
        },
    },
    "agent_heartbeats": {
        "source": ["agent_heartbeats", "heartbeats", "heartbeat", "agent_heartbeat"],
        "extras": "metrics",
        "columns": {
            "id": _id(),
            "agent_id": _col("text", *_AGENT_REF),
            "timestamp": _ts("timestamp", "ts", "time", "recorded_at", "heartbeat_at",
                             "created_at", if_null=REJECT),
            "state": _col("text", "state", "status"),
            "metrics": _col("json", "metrics", "data", "payload"),
            "error_count": _col("integer", "error_count", "errors"),
            "created_at": _ts("created_at"),
        },
    },
    "performance_metrics": {
        "source": ["performance_metrics", "metrics", "performance", "agent_metrics"],
        "extras": "metadata",
        "columns": {
            "id": _id(),
            "agent_id": _col("text", *_AGENT_REF),
            "metric_name": _col("text", "metric_name", "metric", "name", if_null=REJECT),
            "value": _col("numeric", "value", "metric_value"),  # NULL kept (the seed allows it)
            "unit": _col("text", "unit", "units"),
            "timestamp": _ts(*_EVENT_TS, if_null=REJECT),
            "metadata": _col("json", "metadata", "tags", "labels"),
        },
    },
    "system_state": {
        "source": ["system_state", "state", "shared_state", "kv", "key_value"],
        "extras": None,
        "columns": {
            "id": _id(),
            "key": _col("text", "key", "name", "state_key", if_null=REJECT),
            "value": _col("json", "value", "data", "state_value"),
            "updated_at": _ts("updated_at", "updated", "modified_at"),
            "updated_by": _col("text", "updated_by", "modified_by"),
            # ours
            "created_at": _ts("created_at", "created", if_null=MIGRATION_TIME),
        },
    },
    "system_events": {
        "source": ["system_events", "events", "event_log", "audit_log"],
        "extras": "event_data",
        "columns": {
            "id": _id(),
            "event_type": _col("text", "event_type", "type", "event", if_null="unknown"),
            "event_data": _col("json", "event_data", "data", "details", "payload"),
            "agent_id": _col("text", *_AGENT_REF),
            "timestamp": _ts(*_EVENT_TS, if_null=REJECT),
            "severity": _col("text", "severity", "level"),
            # ours
            "source": _col("text", "source", "component"),
        },
    },
    "help_requests": {
        "source": ["help_requests", "help_request"],
        "extras": "context",
        "columns": {
            "id": _id(),
            "request_id": _col("text", "request_id", if_null=REJECT),
            "user_id": _col("text", "user_id", if_null=REJECT),
            "content": _col("text", "content", if_null=REJECT),
            "context": _col("json", "context", "data", "details"),
            "status": _col("text", "status", "state"),
            "priority": _col("text", "priority"),
            "created_at": _ts("created_at", "created", "timestamp"),
            "updated_at": _ts("updated_at", "updated"),
            # ours
            "requesting_agent_id": _col("text", "requesting_agent_id", "requester_id",
                                        "agent_id", "requester"),
            "request_type": _col("text", "request_type", "type"),
            "resolved_at": _ts("resolved_at", "resolved_time", "completed_at"),
        },
    },
    "help_responses": {
        "source": ["help_responses", "help_response"],
        "extras": "response",
        "columns": {
            "id": _id(),
            "request_id": _col("text", "request_id", "help_request_id", if_null=REJECT),
            "response_id": _col("text", "response_id", if_null=REJECT),
            "content": _col("text", "content", if_null=REJECT),
            "confidence_score": _col("numeric", "confidence_score", "confidence"),
            "sources": _col("json", "sources"),
            "generated_at": _ts("generated_at", "created_at", "created", "timestamp"),
            "agent_id": _col("text", "agent_id", "responding_agent_id", "responder_id",
                             "responder"),
            # ours
            "response": _col("json", "response", "data"),
        },
    },
    "agent_communications": {
        "source": ["agent_communications", "communications", "messages", "agent_messages"],
        "extras": "content",
        "columns": {
            "id": _id(),
            "from_agent": _col("text", "from_agent", "sender_id", "sender", "from_agent_id"),
            "to_agent": _col("text", "to_agent", "recipient_id", "recipient", "to_agent_id"),
            "message_type": _col("text", "message_type", "type", if_null="message"),
            "content": _col("json", "content", "message", "payload", "data"),
            "timestamp": _ts("timestamp", "created_at", "created", "sent_at"),
            "status": _col("text", "status", "state"),
            # ours
            "processed_at": _ts("processed_at", "read_at", "delivered_at"),
        },
    },
    "llm_conversations": {
        "source": ["llm_conversations", "llm_calls", "conversations", "llm_requests"],
        "extras": "metadata",
        "columns": {
            "id": _id(),
            "conversation_id": _col("text", "conversation_id", "session_id", if_null=REJECT),
            "agent_id": _col("text", *_AGENT_REF),
            "prompt": _col("text", "prompt", "request"),
            "response": _col("text", "response", "completion"),
            "model": _col("text", "model", "model_name"),
            "tokens_used": _col("integer", "tokens_used", "total_tokens", "tokens"),
            "cost": _col("numeric", "cost", "cost_usd"),
            "timestamp": _ts(*_EVENT_TS),
            "metadata": _col("json", "metadata", "meta"),
            # ours
            "tokens_input": _col("integer", "tokens_input", "input_tokens", "prompt_tokens",
                                 if_null=0),
            "tokens_output": _col("integer", "tokens_output", "output_tokens",
                                  "completion_tokens", if_null=0),
            "duration": _col("float", "duration", "duration_seconds", "latency"),
        },
    },
}}

# The PostgreSQL columns of each table (sql/migrations 0001 + 0004) that may not be NULL and
# have no default: the migration checks the live schema against this before it writes anything.
NOT_NULL_NO_DEFAULT: dict[str, frozenset[str]] = {
    "agents": frozenset({"agent_id"}),
    "agent_heartbeats": frozenset({"agent_id"}),
    "performance_metrics": frozenset({"agent_id", "metric_name"}),
    "system_state": frozenset({"key"}),
    "system_events": frozenset({"event_type"}),
    "help_requests": frozenset({"request_id", "user_id", "content"}),
    "help_responses": frozenset({"request_id", "response_id", "content"}),
    "agent_communications": frozenset({"message_type"}),
    "llm_conversations": frozenset({"conversation_id"}),
}

_TABLE_KEYS = frozenset({"source", "extras", "ignore", "columns", "skip"})
_COLUMN_KEYS = frozenset({"from", "type", "if_null", "scale"})


class MappingError(MigrationError):
    """The mapping file (or the default merged with it) is not valid."""


# ------------------------------------------------------------------------------------------------
# Loading and merging


def load_override(path: Path) -> dict[str, Any]:
    """Read a JSON (.json) or TOML (anything else) mapping file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"mapping file {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise MappingError(f"mapping file {path}: not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise MappingError(f"mapping file {path}: expected an object with a 'tables' key")
    return data


def merge(default: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """The default mapping with the override applied (both in the documented shape)."""
    unknown = set(override) - {"tables"}
    if unknown:
        raise MappingError(f"mapping: unknown top-level key(s) {', '.join(sorted(unknown))}"
                           " (expected only 'tables')")
    result = copy.deepcopy(dict(default))
    tables = override.get("tables", {})
    if not isinstance(tables, dict):
        raise MappingError("mapping: 'tables' must be an object")
    for table, spec in tables.items():
        where = f"mapping: tables.{table}"
        if table not in result["tables"]:
            raise MappingError(f"{where}: unknown target table (known: {', '.join(ORDER)})")
        if not isinstance(spec, dict):
            raise MappingError(f"{where}: expected an object")
        bad = set(spec) - _TABLE_KEYS
        if bad:
            raise MappingError(f"{where}: unknown key(s) {', '.join(sorted(bad))}"
                               f" (allowed: {', '.join(sorted(_TABLE_KEYS))})")
        target = result["tables"][table]
        for key in ("source", "extras", "ignore", "skip"):
            if key in spec:
                target[key] = spec[key]
        for column, cspec in spec.get("columns", {}).items():
            target["columns"][column] = _merge_column(
                f"{where}.columns.{column}", target["columns"].get(column), cspec)
    validate_mapping(result)
    return result


def _merge_column(where: str, base: dict[str, Any] | None, spec: Any) -> dict[str, Any] | None:
    if spec is None or spec is False:
        return None  # unmapped: PostgreSQL's default applies
    if isinstance(spec, str | list):
        spec = {"from": spec}
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: expected a column name, a list of names, false,"
                           " or an object with from/type/if_null")
    bad = set(spec) - _COLUMN_KEYS
    if bad:
        raise MappingError(f"{where}: unknown key(s) {', '.join(sorted(bad))}"
                           f" (allowed: {', '.join(sorted(_COLUMN_KEYS))})")
    merged = dict(base or {})
    merged.update(spec)
    if isinstance(merged.get("from"), str):
        merged["from"] = [merged["from"]]
    merged.setdefault("type", "auto")
    return merged


def validate_mapping(mapping: Mapping[str, Any]) -> None:
    for table, spec in mapping["tables"].items():
        where = f"mapping: tables.{table}"
        sources = spec.get("source")
        if isinstance(sources, str):
            sources = [sources]
        if not isinstance(sources, list) or not sources or not all(
                isinstance(s, str) for s in sources):
            raise MappingError(f"{where}.source: expected a table name or a list of names")
        if not isinstance(spec.get("ignore", []), list):
            raise MappingError(f"{where}.ignore: expected a list of column names")
        if not spec["columns"].get("id"):
            raise MappingError(f"{where}.columns.id: ids are kept (resume, validation and the"
                               f" references between tables need them); map it, e.g. to"
                               f" {ROWID!r}")
        defaults = DEFAULT_MAPPING["tables"][table]["columns"]
        extras = spec.get("extras")
        if extras is not None and (defaults.get(extras) or {}).get("type") != "json":
            raise MappingError(f"{where}.extras: {extras!r} is not a json column of the table")
        for column, cspec in spec["columns"].items():
            if cspec is None:
                continue
            cwhere = f"{where}.columns.{column}"
            base, _, key = column.partition(".")
            if base not in defaults:
                raise MappingError(f"{cwhere}: {table} has no column {base!r}"
                                   f" (columns: {', '.join(c for c in defaults if '.' not in c)})")
            if key and spec["columns"].get(base, {}) is None:
                raise MappingError(f"{cwhere}: the json column {base!r} is unmapped")
            if key and (spec["columns"].get(base) or {}).get("type") != "json":
                raise MappingError(f"{cwhere}: {base!r} is not a json column")
            if cspec.get("type") not in TYPES:
                raise MappingError(f"{cwhere}.type: {cspec.get('type')!r} is not one of "
                                   f"{', '.join(sorted(TYPES))}")
            names = cspec.get("from")
            if not isinstance(names, list) or not names or not all(
                    isinstance(n, str) for n in names):
                raise MappingError(f"{cwhere}.from: expected a column name or a list of names")
            if_null = cspec.get("if_null")
            if isinstance(if_null, str) and if_null.startswith("$") and not (
                    if_null in (REJECT, MIGRATION_TIME) or if_null.startswith(COLUMN_PREFIX)):
                raise MappingError(f"{cwhere}.if_null: {if_null!r}: the $ forms are {REJECT},"
                                   f" {MIGRATION_TIME} and {COLUMN_PREFIX}NAME")
            if (isinstance(if_null, str) and if_null.startswith(COLUMN_PREFIX)
                    and if_null[len(COLUMN_PREFIX):] not in spec["columns"]):
                raise MappingError(f"{cwhere}.if_null: no target column "
                                   f"{if_null[len(COLUMN_PREFIX):]!r}")
            scale = cspec.get("scale")
            if scale is not None and (not isinstance(scale, int) or not 0 <= scale <= 30):
                raise MappingError(f"{cwhere}.scale: expected an integer 0-30")


def effective_mapping(path: Path | None) -> dict[str, Any]:
    if path is None:
        mapping = copy.deepcopy(DEFAULT_MAPPING)
        validate_mapping(mapping)
        return mapping
    return merge(DEFAULT_MAPPING, load_override(path))


# ------------------------------------------------------------------------------------------------
# Resolution against a SQLite file's tables


@dataclass(frozen=True)
class SourceTable:
    """A SQLite table as introspected: its name, columns (in order) and declared types."""

    name: str
    columns: tuple[str, ...]
    declared: tuple[str, ...] = ()
    without_rowid: bool = False


@dataclass(frozen=True)
class ColumnPlan:
    target: str  # PostgreSQL column
    key: str | None  # key inside the json column, for "col.key" targets
    source: str | None  # SQLite column, ROWID, or None (no source: if_null for every row)
    type: str
    if_null: Any = None
    scale: int | None = None
    references: str | None = None  # 'agents' / 'help_requests'


@dataclass(frozen=True)
class TablePlan:
    target: str
    source: str
    columns: tuple[ColumnPlan, ...]
    extras: str | None  # json column receiving unmapped columns (when kept)
    extra_columns: tuple[str, ...] = ()  # unmapped SQLite columns kept into `extras`
    ignored: tuple[str, ...] = ()  # SQLite columns left behind (mapping ignore / --unmapped ignore)
    rowid_alias: str = "rowid"

    @property
    def copy_columns(self) -> tuple[str, ...]:
        """The PostgreSQL columns the COPY writes (json keys fold into their column)."""
        out: list[str] = []
        for c in self.columns:
            if c.target not in out:
                out.append(c.target)
        if self.extras and self.extra_columns and self.extras not in out:
            out.append(self.extras)
        return tuple(out)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """The SQLite columns the SELECT reads (after the rowid), in order, without repeats."""
        out: list[str] = []
        for c in self.columns:
            if c.source and c.source != ROWID and c.source not in out:
                out.append(c.source)
        for name in self.extra_columns:
            if name not in out:
                out.append(name)
        return tuple(out)

    def column(self, target: str) -> ColumnPlan | None:
        return next((c for c in self.columns if c.target == target and c.key is None), None)


@dataclass
class Resolution:
    plans: list[TablePlan] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line each; any error: nothing runs
    notes: list[str] = field(default_factory=list)  # tables not migrated, and why


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _find(candidates: Sequence[str], available: Sequence[str], used: set[str]) -> str | None:
    """The first candidate present in `available` (exact, then case-insensitive, then ignoring
    case and punctuation); a column already used by another target is not taken again."""
    free = [a for a in available if a not in used]
    for cand in candidates:
        if cand == ROWID:
            return ROWID
        for match in (lambda a, c=cand: a == c,
                      lambda a, c=cand: a.lower() == c.lower(),
                      lambda a, c=cand: _norm(a) == _norm(c)):
            hit = next((a for a in free if match(a)), None)
            if hit is not None:
                return hit
    return None


def _rowid_alias(columns: Sequence[str]) -> str:
    lowered = {c.lower() for c in columns}
    for alias in ("rowid", "_rowid_", "oid"):
        if alias not in lowered:
            return alias
    raise MappingError("a table has columns named rowid, _rowid_ and oid: its rowid is hidden")


def resolve(mapping: Mapping[str, Any], tables: Sequence[SourceTable],
            unmapped: str = "error") -> Resolution:
    """Match the mapping to the SQLite file's tables. `unmapped`: what to do with SQLite columns
    the mapping does not mention: 'error' (the default: stop, naming them), 'keep' (into the
    table's extras json column) or 'ignore'."""
    res = Resolution()
    by_name = {t.name: t for t in tables}
    claimed: dict[str, str] = {}
    for target in ORDER:
        spec = mapping["tables"][target]
        candidates = spec["source"] if isinstance(spec["source"], list) else [spec["source"]]
        found = []
        for cand in candidates:
            hit = _find([cand], list(by_name), set(claimed))
            if hit is not None and hit not in found:
                found.append(hit)
        if not found:
            continue
        if spec.get("skip"):
            res.notes.append(f"{found[0]}: skipped (mapping: tables.{target}.skip)")
            claimed[found[0]] = target
            continue
        if len(found) > 1:
            res.errors.append(
                f"{target}: SQLite tables {', '.join(found)} could all be {target}; choose one"
                f" with tables.{target}.source in a mapping file (--mapping)")
            continue
        table = by_name[found[0]]
        claimed[table.name] = target
        if table.without_rowid:
            res.errors.append(f"{table.name}: a WITHOUT ROWID table is not supported"
                              " (the migration resumes by rowid)")
            continue
        plan, error = _resolve_table(target, spec, table, unmapped)
        if error:
            res.errors.append(error)
        if plan:
            res.plans.append(plan)
    for t in tables:
        if t.name not in claimed and not t.name.lower().startswith("sqlite_"):
            res.notes.append(f"{t.name}: not migrated (no PostgreSQL table for it; map it with"
                             " tables.<target>.source)")
    return res


def _resolve_table(target: str, spec: Mapping[str, Any], table: SourceTable,
                   unmapped: str) -> tuple[TablePlan | None, str | None]:
    used: set[str] = set()
    ignore = [_find([n], table.columns, set()) for n in spec.get("ignore", [])]
    used.update(n for n in ignore if n)
    cols: list[ColumnPlan] = []
    missing: list[str] = []
    # Plain columns before "col.key" ones, so a json column claims its own name first.
    items = sorted(((k, v) for k, v in spec["columns"].items() if v is not None),
                   key=lambda kv: "." in kv[0])
    for name, cspec in items:
        base, _, key = name.partition(".")
        source = _find(cspec["from"], table.columns, used)
        if source and source != ROWID:
            used.add(source)
        if_null = cspec.get("if_null")
        if source is None and not key:
            required = base in NOT_NULL_NO_DEFAULT.get(target, ())
            if if_null == REJECT or (required and if_null is None):
                missing.append(f"{base} (looked for {', '.join(cspec['from'])})")
                continue
            if not required or if_null == MIGRATION_TIME:
                continue  # nothing to write: PostgreSQL's default applies
            # else: a required column without a source gets its if_null on every row
        elif source is None:
            continue  # a json key without a source: the key is left out
        cols.append(ColumnPlan(
            target=base, key=key or None, source=source, type=cspec["type"], if_null=if_null,
            scale=cspec.get("scale"), references=REFERENCES.get((target, base))))
    if missing:
        return None, (f"{table.name} -> {target}: no SQLite column for required "
                      f"{'; '.join(missing)}; map it in a mapping file (--mapping)")
    rest = tuple(c for c in table.columns if c not in used)
    extras = spec.get("extras")
    plan = TablePlan(target=target, source=table.name, columns=tuple(cols), extras=extras,
                     ignored=tuple(n for n in ignore if n), rowid_alias=_rowid_alias(table.columns))
    if not rest:
        return plan, None
    if unmapped == "ignore":
        return _replace(plan, ignored=plan.ignored + rest), None
    if unmapped == "keep" and extras:
        if plan.column(extras) is None:
            # The extras column has no source of its own: it starts from an empty object.
            plan = _replace(plan, columns=plan.columns + (ColumnPlan(
                target=extras, key=None, source=None, type="json", if_null={}),))
        return _replace(plan, extra_columns=rest), None
    hint = (f"pass --unmapped keep (into {target}.{extras}) or --unmapped ignore" if extras
            else "pass --unmapped ignore")
    return None, (f"{table.name} -> {target}: unexpected column(s) {', '.join(rest)}: map or"
                  f" ignore them in a mapping file (--mapping), or {hint}")


def _replace(plan: TablePlan, **changes: Any) -> TablePlan:
    from dataclasses import replace
    return replace(plan, **changes)


def plan_summary(plan: TablePlan) -> str:
    """'agents <- agents: id<-id, agent_id<-agent_id, ...' for dry runs and reports."""
    parts = []
    for c in plan.columns:
        target = f"{c.target}.{c.key}" if c.key else c.target
        src = "rowid" if c.source == ROWID else (c.source or f"(always {c.if_null!r})")
        parts.append(target if src == target else f"{target}<-{src}")
    if plan.extra_columns:
        parts.append(f"{plan.extras}<-{{{', '.join(plan.extra_columns)}}}")
    line = f"{plan.target} <- {plan.source}: {', '.join(parts)}"
    if plan.ignored:
        line += f"; ignored: {', '.join(plan.ignored)}"
    return line
