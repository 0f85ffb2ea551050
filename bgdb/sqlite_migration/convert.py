"""Loosely typed SQLite values -> PostgreSQL values, one row at a time.

SQLite stores whatever the agents wrote: timestamps as ISO-8601 text (with or without a zone,
'T' or space separated) or as Unix epoch seconds (integer or real), JSON as text, booleans as
0/1, numbers as text now and then. Every conversion here is deterministic, so `validate` can
convert the SQLite rows again and compare them with what PostgreSQL holds.

What cannot be converted is never dropped silently: the row's issue says what happened and keeps
the SQLite value (the migration stores issues in PostgreSQL): invalid JSON is kept as a JSON
string, an unconvertible value becomes NULL (or the column's `if_null`), and a row whose
required value is missing is left out ("rejected") with its whole SQLite row kept in the issue.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from bgdb.sqlite_migration.mapping import (
    COLUMN_PREFIX,
    MIGRATION_TIME,
    REJECT,
    ROWID,
    ColumnPlan,
    TablePlan,
)

INT4 = (-(2**31), 2**31 - 1)
INT8 = (-(2**63), 2**63 - 1)
# Epoch values this large are not seconds: milliseconds above 1e11 (year 5138 in seconds),
# microseconds above 1e14. Agents written in JavaScript or Java store milliseconds.
EPOCH_MS = 1e11
EPOCH_US = 1e14
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ZONE_WORD = re.compile(r"\s*(?:UTC|GMT|Z)$", re.IGNORECASE)
_SLASH_DATE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})")
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class ConvertError(ValueError):
    """A value that cannot be converted to the column's type."""


@dataclass(frozen=True)
class Issue:
    # invalid_json | bad_value | nul_removed | json_wrapped | rejected | placeholder_agent
    kind: str
    table: str
    rowid: int | None
    column: str | None
    detail: str
    raw: str | None = None  # the SQLite value (or, for a rejected row, the row) as JSON text


def encode_raw(value: Any) -> Any:
    """A SQLite value as JSON-serialisable data (bytes as base64, NaN/inf as text)."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def raw_json(value: Any) -> str:
    # ensure_ascii: NUL and lone surrogates become \u escapes, so the text always fits a text
    # column (PostgreSQL refuses NUL bytes).
    return json.dumps(encode_raw(value), ensure_ascii=True)


def row_json(names: Sequence[str], values: Sequence[Any]) -> str:
    return json.dumps({n: encode_raw(v) for n, v in zip(names, values, strict=True)},
                      ensure_ascii=True)


# ------------------------------------------------------------------------------------------------
# Scalar conversions. Each returns None for NULL and raises ConvertError for what it cannot read.


def _text_of(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConvertError("bytes that are not UTF-8 text") from exc
    if isinstance(value, InvalidText):
        raise ConvertError("text that is not valid UTF-8")
    return value if isinstance(value, str) else str(value)


def to_timestamp(value: Any, naive_tz: tzinfo = UTC) -> datetime | None:
    """ISO-8601 (with or without zone, 'T' or space, 'Z'/'UTC' suffix, YYYY/MM/DD) or Unix epoch
    (int, real, or numeric text; ms/us recognised by size). A zone-less time is in naive_tz.
    The result is timezone-aware, in UTC."""
    if value is None:
        return None
    if type(value) is str and len(value) > 9 and value[4] == "-":
        # The common case first: ISO-8601 text, which fromisoformat reads directly.
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = _loose_timestamp(value.strip(), value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return _from_epoch(value, value)
    else:
        text = _text_of(value).strip()
        if not text:
            return None
        if _NUMBER.match(text):
            number: float | int = float(text) if any(c in text for c in ".eE") else int(text)
            return _from_epoch(number, value)
        parsed = _loose_timestamp(text, value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive_tz)
    return parsed.astimezone(UTC)


def _loose_timestamp(text: str, original: Any) -> datetime:
    """ISO-8601 after the usual repairs: a 'UTC'/'GMT'/'z' suffix, slashes in the date."""
    text = _ZONE_WORD.sub("+00:00", text)
    text = _SLASH_DATE.sub(r"\1-\2-\3", text)
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConvertError(f"not a timestamp: {original!r}") from exc


def _from_epoch(number: float | int, original: Any) -> datetime:
    if isinstance(number, float) and not math.isfinite(number):
        raise ConvertError(f"not a timestamp: {original!r}")
    seconds = number
    if abs(number) >= EPOCH_US:
        seconds = number / 1_000_000
    elif abs(number) >= EPOCH_MS:
        seconds = number / 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ConvertError(f"epoch value out of range: {original!r}") from exc


def to_integer(value: Any, bounds: tuple[int, int] = INT4) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ConvertError(f"not an integer: {value!r}")
        result = int(value)
    else:
        text = _text_of(value).strip()
        if not text:
            return None
        try:
            result = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError as exc:
                raise ConvertError(f"not an integer: {value!r}") from exc
            if not number.is_integer():
                raise ConvertError(f"not an integer: {value!r}") from None
            result = int(number)
    if not bounds[0] <= result <= bounds[1]:
        raise ConvertError(f"integer out of range: {value!r}")
    return result


def to_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    text = _text_of(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ConvertError(f"not a number: {value!r}") from exc


def to_numeric(value: Any, scale: int | None = None) -> Decimal | None:
    if value is None:
        return None
    try:
        if isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, int):
            number = Decimal(value)
        else:
            text = _text_of(value).strip()
            if not text:
                return None
            number = Decimal(text)
    except InvalidOperation as exc:
        raise ConvertError(f"not a number: {value!r}") from exc
    if not number.is_finite():
        raise ConvertError(f"not a finite number: {value!r}")
    if scale is not None:
        # PostgreSQL rounds numeric half away from zero; so does ROUND_HALF_UP.
        number = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    return number


def to_boolean(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        if value in (0, 1):
            return bool(value)
        raise ConvertError(f"not a boolean (0/1): {value!r}")
    text = _text_of(value).strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConvertError(f"not a boolean: {value!r}")


def to_text(value: Any) -> str | None:
    """Text; NUL characters (which PostgreSQL text cannot hold) are removed by the caller."""
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value)
    return _text_of(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# NaN and Infinity are Python's extensions; PostgreSQL's jsonb refuses them.
_decode_json = json.JSONDecoder(parse_constant=_reject_constant).decode


def parse_json(value: Any, decode: Callable[[str], Any] | None = None
               ) -> tuple[Any, str | None, bool]:
    """(python value, its JSON text or None to re-serialise, valid). Invalid JSON - and JSON
    PostgreSQL refuses (NaN, Infinity, \\u0000) - is kept as a JSON string: (text, None, False)."""
    if value is None:
        return None, None, True
    if isinstance(value, bool):
        return value, None, True
    if isinstance(value, int):
        return value, str(value), True
    if isinstance(value, float):
        if math.isfinite(value):
            return value, repr(value), True
        return repr(value), None, False
    text = _text_of(value)
    if "\\u0000" in text or "\x00" in text:
        return text.replace("\x00", ""), None, False
    try:
        parsed = (decode or _decode_json)(text)
    except ValueError:
        return text, None, False
    return parsed, text, True


def to_auto(value: Any) -> Any:
    """A value kept as it was (unmapped columns folded into a json column)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8").replace("\x00", "")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, InvalidText):
        return {"base64": base64.b64encode(value.data).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return value.replace("\x00", "")
    return value


class InvalidText:
    """A SQLite TEXT value that is not valid UTF-8 (see source.text_factory)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"InvalidText({self.data!r})"


def _encode_invalid(value: Any) -> Any:
    return value.data if isinstance(value, InvalidText) else value


# ------------------------------------------------------------------------------------------------
# Canonical form, for checksums: the same for a converted SQLite value and for the value
# PostgreSQL returns for it. jsonb keeps numbers as numeric and prints integral ones without an
# exponent (1e2 comes back as 100, 1.5e300 as 15 followed by 299 zeros; 1.0 stays 1.0): so JSON
# numbers are compared by value, integral ones as exact ints, on both sides.


def _canon_float(text: str) -> int | float:
    """A JSON number with a fraction or an exponent: an exact int when integral."""
    number = Decimal(text)
    if number == number.to_integral_value():
        return int(number)
    return float(text)


_decode_canonical = json.JSONDecoder(parse_float=_canon_float,
                                     parse_constant=_reject_constant).decode


def canonical_json_loads(data: str | bytes | bytearray | memoryview) -> Any:
    """JSON text -> python, numbers in canonical form (a psycopg json loader, and validate's)."""
    return _decode_canonical(data if isinstance(data, str) else bytes(data).decode("utf-8"))


def canon_json(obj: Any) -> Any:
    """A python JSON value with its numbers in the canonical form of canonical_json_loads."""
    if isinstance(obj, float):
        return _canon_float(repr(obj)) if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: canon_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [canon_json(v) for v in obj]
    return obj


def _json_key(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def canonical(value: Any, type_: str) -> str:
    """A readable canonical text, for reports (the checksum uses RowConverter.digest)."""
    if value is None:
        return "NULL"
    if type_ == "json":
        return _json_key(canon_json(value))
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return str(value.normalize()) if value else "0"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _float_key(value: Any) -> Any:
    return "NaN" if value != value else value  # NaN != NaN, and hash(nan) is per object


# ------------------------------------------------------------------------------------------------
# Rows


@dataclass
class Converted:
    rowid: int
    values: list[Any]  # in plan.copy_columns order; json as text (write) or python (check)
    issues: list[Issue] | None = None
    reject: str | None = None


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "text": to_text,
    "integer": to_integer,
    "bigint": lambda v: to_integer(v, INT8),
    "float": to_float,
    "boolean": to_boolean,
    "auto": to_auto,
}


_SLOW = object()  # "not the common case": convert through RowConverter._scalar


class RowConverter:
    """Converts rows of one TablePlan. Input rows: (rowid, *values of plan.source_columns).

    for_write=True gives json columns as text for COPY; False gives python values (validate)."""

    def __init__(self, plan: TablePlan, *, naive_tz: tzinfo = UTC,
                 migration_time: datetime | None = None, for_write: bool = True) -> None:
        self.plan = plan
        self.naive_tz = naive_tz
        self.migration_time = migration_time or datetime.now(UTC)
        self.for_write = for_write
        # Check mode reads JSON in canonical form, as validate reads PostgreSQL's jsonb.
        self._decode = _decode_json if for_write else _decode_canonical
        self.out_columns = plan.copy_columns
        self.out_types = [self._out_type(c) for c in self.out_columns]
        src_index = {name: i + 1 for i, name in enumerate(plan.source_columns)}
        self.source_names = ("rowid", *plan.source_columns)
        # Per plain column: (slot, column, source index (-1: none), fast converter, if_null kind,
        # if_null value). The fast converter handles the common case; anything unusual goes
        # through _scalar, which also writes the issue.
        self._plain = []
        for c in plan.columns:
            if c.key is not None:
                continue
            idx = 0 if c.source == ROWID else src_index.get(c.source or "", -1)
            kind, default = self._if_null(c)
            self._plain.append((self.out_columns.index(c.target), c, idx,
                                self._fast(c), kind, default))
        self._keys = [(self.out_columns.index(c.target), c, src_index.get(c.source or "", -1))
                      for c in plan.columns if c.key is not None]
        self._extras = [(name, src_index[name]) for name in plan.extra_columns]
        self._extras_slot = (self.out_columns.index(plan.extras)
                             if plan.extras and plan.extra_columns else -1)
        self._json_slots = [i for i, t in enumerate(self.out_types) if t == "json"]
        self._keyfns: list[Callable[[Any], Any] | None] = [
            _json_key if t == "json" else _float_key if t == "float" else None
            for t in self.out_types]
        self._deferred = [(p[0], self.out_columns.index(p[5])) for p in self._plain
                          if p[4] == "column"]

    def _out_type(self, column: str) -> str:
        c = self.plan.column(column)
        if c is not None:
            return c.type
        return "json"  # a json column fed only by keys or extras

    def _if_null(self, c: ColumnPlan) -> tuple[str | None, Any]:
        """('reject' | 'time' | 'column' | 'value' | None, value), the literal converted to the
        column's type (so the checksum sees what PostgreSQL will hold)."""
        v = c.if_null
        if v is None:
            return None, None
        if v == REJECT:
            return "reject", None
        if v == MIGRATION_TIME:
            return "time", self.migration_time
        if isinstance(v, str) and v.startswith(COLUMN_PREFIX):
            return "column", v[len(COLUMN_PREFIX):]
        if c.type == "json":
            return "value", v
        ok, value, _, issue = self._scalar(c, v, 0)
        if not ok or issue is not None:
            raise ValueError(f"if_null {v!r} of {c.target} is not a {c.type}")
        return "value", value

    def _fast(self, c: ColumnPlan) -> Callable[[Any], Any] | None:
        if c.type == "timestamp":
            tz = self.naive_tz
            return lambda v: to_timestamp(v, tz)
        if c.type == "text":
            return lambda v: v if type(v) is str and "\x00" not in v else _SLOW
        if c.type in ("integer", "bigint"):
            lo, hi = INT4 if c.type == "integer" else INT8
            return lambda v: v if type(v) is int and lo <= v <= hi else _SLOW
        if c.type == "float":
            return lambda v: float(v) if type(v) in (float, int) else _SLOW
        if c.type == "numeric" and c.scale is None:
            # SQLite REAL/INTEGER: exact decimal of the float's shortest repr (what to_numeric
            # does); NaN, infinities and text go the slow way (issues, conversions).
            return lambda v: (Decimal(repr(v)) if type(v) is float and math.isfinite(v)
                              else Decimal(v) if type(v) is int else _SLOW)
        return None

    def convert(self, row: Sequence[Any]) -> Converted:
        rowid = row[0]
        out: list[Any] = [None] * len(self.out_columns)
        issues: list[Issue] | None = None
        # json columns holding a value (JSON null included), and the original JSON text of
        # those not modified since (written as is: no re-serialisation).
        present: set[int] = set()
        texts: dict[int, str] = {}
        decode = self._decode
        for slot, c, idx, fast, null_kind, null_value in self._plain:
            raw = row[idx] if idx >= 0 else None
            ok = False
            value: Any = None
            text = None
            if raw is None:
                pass
            elif c.type == "json":
                if type(raw) is str and "\\u0000" not in raw and "\x00" not in raw:
                    with contextlib.suppress(ValueError):
                        value, text, ok = decode(raw), raw, True
                if not ok:
                    ok, value, text, issue = self._scalar(c, raw, rowid)
                    if issue is not None:
                        issues = (issues or []) + [issue]
            else:
                try:
                    value = fast(raw) if fast is not None else _SLOW
                except ConvertError:
                    value = _SLOW
                if value is _SLOW:
                    ok, value, text, issue = self._scalar(c, raw, rowid)
                    if issue is not None:
                        issues = (issues or []) + [issue]
                else:
                    ok = value is not None
            if not ok and null_kind is not None:
                if null_kind == "reject":
                    reason = (f"{c.target} is NULL" if raw is None else
                              f"{c.target}: cannot convert {raw_json(_encode_invalid(raw))}")
                    return self._rejected(row, reason)
                if null_kind != "column":
                    value, ok = null_value, True
            if ok and c.type == "json":
                present.add(slot)
                if text is not None:
                    texts[slot] = text
            out[slot] = value
        for slot, other in self._deferred:
            if out[slot] is None:
                out[slot] = out[other]
        for slot, c, idx in self._keys:
            raw = row[idx] if idx >= 0 else None
            ok, value, _, issue = self._scalar(c, raw, rowid)
            if issue is not None:
                issues = (issues or []) + [issue]
            if ok:
                issues = self._merge(out, present, texts, slot, {c.key or "": value}, rowid,
                                     issues)
        if self._extras:
            extra = {name: to_auto(row[idx]) for name, idx in self._extras
                     if row[idx] is not None}
            if extra:
                issues = self._merge(out, present, texts, self._extras_slot, extra, rowid,
                                     issues)
        if self.for_write:
            for slot in self._json_slots:
                if slot in texts:
                    out[slot] = texts[slot]
                elif slot in present:
                    out[slot] = json.dumps(out[slot])
        else:
            for slot in self._json_slots:
                if slot in present and slot not in texts:
                    out[slot] = canon_json(out[slot])  # merged or literal: python-made numbers
        return Converted(rowid, out, issues)

    def _merge(self, out: list[Any], present: set[int], texts: dict[int, str], slot: int,
               keys: dict[str, Any], rowid: int, issues: list[Issue] | None) -> list[Issue] | None:
        base = out[slot] if slot in present else {}
        if not isinstance(base, dict):
            # The column holds a non-object (an array, a string kept from invalid JSON): keep it
            # under "_value" so the added keys have an object to live in.
            issue = Issue("json_wrapped", self.plan.target, rowid, self.out_columns[slot],
                          "not a JSON object: kept under \"_value\" to add "
                          + ", ".join(sorted(keys)), None)
            issues = (issues or []) + [issue]
            base = {"_value": base}
        else:
            base = dict(base)
        base.update(keys)
        out[slot] = base
        present.add(slot)
        texts.pop(slot, None)
        return issues

    def _scalar(self, c: ColumnPlan, raw: Any,
                rowid: int) -> tuple[bool, Any, str | None, Issue | None]:
        """(ok, value, original JSON text, issue); ok is False for NULL and for a value that
        could not be converted (the issue says which)."""
        if raw is None:
            return False, None, None, None
        table = self.plan.target
        column = f"{c.target}.{c.key}" if c.key else c.target
        try:
            if c.type == "json":
                value, text, valid = parse_json(raw, self._decode)
                if valid:
                    return True, value, text, None
                return True, value, None, Issue(
                    "invalid_json", table, rowid, column,
                    "invalid JSON kept as a JSON string", raw_json(_encode_invalid(raw)))
            if c.type == "timestamp":
                value = to_timestamp(raw, self.naive_tz)
            elif c.type == "numeric":
                value = to_numeric(raw, c.scale)
            else:
                value = _SCALARS[c.type](raw)
        except ConvertError as exc:
            return False, None, None, Issue("bad_value", table, rowid, column, str(exc),
                                            raw_json(_encode_invalid(raw)))
        if value is None:
            return False, None, None, None  # empty text: NULL
        if isinstance(value, str) and "\x00" in value:
            return True, value.replace("\x00", ""), None, Issue(
                "nul_removed", table, rowid, column, "NUL characters removed",
                raw_json(_encode_invalid(raw)))
        return True, value, None, None

    def _rejected(self, row: Sequence[Any], reason: str) -> Converted:
        rowid = row[0]
        # The whole SQLite row goes into the issue; the per-value issues are moot.
        raw = row_json(self.source_names, [_encode_invalid(v) for v in row])
        return Converted(rowid, [], [Issue("rejected", self.plan.target, rowid, None, reason,
                                           raw)], reason)

    def canonical_row(self, values: Sequence[Any]) -> list[str]:
        """Readable canonical values (drill-down and spot-check reports)."""
        return [canonical(v, t) for v, t in zip(values, self.out_types, strict=True)]

    def digest(self, values: Sequence[Any]) -> int:
        """A 64-bit hash of a row of check-mode values (or of the same columns read back from
        PostgreSQL, jsonb loaded with canonical_json_loads); sums of these are
        order-independent. Python's hash: equal values hash equal whatever their form (an
        aware datetime in any zone, Decimal 1.50 and 1.5, 100 and 100.0); it is salted per
        process, which is fine since both sides are hashed in one process."""
        key = tuple(v if f is None or v is None else f(v)
                    for v, f in zip(values, self._keyfns, strict=True))
        return hash(key) & 0xFFFF_FFFF_FFFF_FFFF
