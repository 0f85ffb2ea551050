"""postgres_overrides: what an operator may set in postgresql.conf, checked before any host.

Three guards: settings the bundle guarantees are refused with the key that sets them properly;
a value cannot escape its quoted line (control characters, backslashes); and every name and
value is checked against pg_settings of the target major (name, type, range, enum), from the
tables in deploy/pg_settings/ that generate.sh builds from Debian's own PostgreSQL packages.
A major without a table (12, 14, 16: no Debian release ships them) gets the first two guards
only; docs/settings.md says so.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from deploy.settings_schema import SettingsError

TABLES = Path(__file__).resolve().parent / "pg_settings"
# Debian's majors: 11 (bullseye) 13, 12 (bookworm) 15, 13 (trixie) 17.
SHIPPED_MAJORS = (13, 15, 17)
KEY = "postgres_overrides"
# An override such as archive_command = '/bin/true' would silently break the WAL chain that
# point-in-time recovery depends on.
ARCHIVE_GUCS = ("archive_mode", "archive_command", "archive_library", "archive_timeout")

# The bundle's guarantees: setting -> what to set instead (the message's "allowed" part).
OWNED: dict[str, str] = {
    **dict.fromkeys(("ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_crl_file",
                     "ssl_crl_dir", "ssl_passphrase_command"),
                    "TLS is always on: bring your own files with postgres_ssl_cert_file, "
                    "postgres_ssl_key_file and postgres_ssl_ca_file"),
    "listen_addresses": "set by postgres_listen_addresses (never '*')",
    "port": "set by postgres_port",
    "superuser_reserved_connections": "set by postgres_superuser_reserved_connections",
    "password_encryption": "always scram-sha-256: the deploy stores SCRAM verifiers",
    **dict.fromkeys(("data_directory", "config_file", "external_pid_file"),
                    "set by pg_createcluster (postgres_cluster, postgres_version)"),
    **dict.fromkeys(("hba_file", "ident_file"),
                    "the bundle renders pg_hba.conf from the postgres_*_cidrs keys"),
    "unix_socket_directories": "PgBouncer, the exporter and the deploy use /var/run/postgresql",
    **dict.fromkeys(ARCHIVE_GUCS, "WAL archiving is set by the backup_* keys, not an override"),
    **dict.fromkeys(("primary_conninfo", "primary_slot_name", "hot_standby"),
                    "replication is set by deploy/replica.py from the inventory"),
    **dict.fromkeys(("log_destination", "logging_collector", "log_directory", "log_filename",
                     "syslog_facility", "syslog_ident"),
                    "the audit lines must reach the PostgreSQL log where `bgdb check` reads "
                    "them: see the postgres_pgaudit* keys"),
}
# Owned settings whose value may still be raised: setting -> the values allowed.
NARROWED: dict[str, tuple[str, ...]] = {
    "ssl_min_protocol_version": ("TLSv1.2", "TLSv1.3"),
    "wal_level": ("replica", "logical"),  # minimal breaks archiving and the replicas
    "log_min_messages": ("debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice",
                         "warning", "error", "log"),  # fatal/panic would hide the audit lines
}
_NAME = re.compile(r"^[a-z_][a-z0-9_.]*$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")  # a newline starts a setting, '\' escapes the quote
_MEMORY_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "min": 60_000.0, "h": 3_600_000.0,
               "d": 86_400_000.0}
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")


@cache
def table(major: int) -> dict[str, tuple[str, str | None, str | None, str | None,
                                          list[str] | None, str]] | None:
    """pg_settings of `major` by lowercase name: (vartype, unit, min, max, enumvals, context)."""
    path = TABLES / f"{major}.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return {row[0].lower(): tuple(row[1:]) for row in doc["settings"]}


def check(overrides: Mapping[str, str], majors: Iterable[int], *, pgaudit: bool,
          source: str | None = None) -> None:
    """Refuse what the bundle owns, unsafe values, and what pg_settings of each of `majors`
    (the one target major, or every major the host may get) does not accept."""
    for name, value in overrides.items():
        gkey = f"{KEY}.{name}"
        if not _NAME.match(name):
            raise SettingsError(KEY, name, "not a PostgreSQL setting name", source)
        if name.startswith("pgaudit."):
            raise SettingsError(gkey, value, "pgaudit is set by the postgres_pgaudit* keys, not "
                                "an override", source)
        if name in OWNED:
            raise SettingsError(gkey, value, OWNED[name], source)
        if _UNSAFE.search(value):
            raise SettingsError(gkey, value, "control characters and backslashes are refused: "
                                "one plain value per setting", source)
        if name in NARROWED and value.lower() not in (v.lower() for v in NARROWED[name]):
            raise SettingsError(gkey, value, f"the bundle needs one of "
                                f"{', '.join(NARROWED[name])}", source)
        if name == "shared_preload_libraries":
            libs = {lib.strip() for lib in value.split(",")}
            needed = ["pg_stat_statements", *(["pgaudit"] if pgaudit else [])]
            missing = [lib for lib in needed if lib not in libs]
            if missing:
                raise SettingsError(gkey, value, f"must keep {', '.join(missing)} (the deploy "
                                    "creates its extension; pgaudit: see postgres_pgaudit)",
                                    source)
        for major in majors:
            known = table(major)
            if known is not None:
                _check_against(known, major, name, value, source)


def _check_against(known: Mapping[str, tuple[Any, ...]], major: int, name: str, value: str,
                   source: str | None) -> None:
    gkey = f"{KEY}.{name}"
    row = known.get(name)
    if row is None:
        prefix = name.partition(".")[0]
        if "." in name and not any(k.startswith(prefix + ".") for k in known):
            return  # another extension's namespace: PostgreSQL accepts any placeholder
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SettingsError(KEY, name, f"not a setting of PostgreSQL {major}{hint}", source)
    vartype, unit, lo, hi, enumvals, _context = row
    what = _value_error(vartype, unit, lo, hi, enumvals, value)
    if what:
        raise SettingsError(gkey, value, f"{what} (PostgreSQL {major})", source)


def _value_error(vartype: str, unit: str | None, lo: str | None, hi: str | None,
                 enumvals: list[str] | None, value: str) -> str | None:
    """None if PostgreSQL would take `value`, else what it expects."""
    text = value.strip().lower()
    if vartype == "bool":  # parse_bool: on, off, and any prefix of true, false, yes, no
        ok = text in ("1", "0", "on") or (len(text) > 1 and "off".startswith(text)) or \
            any(text and word.startswith(text) for word in ("true", "false", "yes", "no"))
        return None if ok else "expected on or off"
    if vartype == "enum":
        options = enumvals or []
        return None if text in (o.lower() for o in options) else \
            f"expected one of {', '.join(options)}"
    if vartype not in ("integer", "real"):
        return None  # string: any text (already one safe line)
    allowed = f"expected {'an integer' if vartype == 'integer' else 'a number'} {lo}-{hi}" + (
        f" (unit {unit}, or with a unit)" if unit else "")
    number = _in_unit(value, unit)
    if number is None:
        return allowed
    if vartype == "integer":
        number = float(round(number))
    if lo is not None and hi is not None and not float(lo) <= number <= float(hi):
        return allowed
    return None


def _in_unit(value: str, unit: str | None) -> float | None:
    """The value in the setting's own unit ("8kB", "ms", ...), or None if it is not one."""
    m = _NUMBER.match(value)
    if not m:
        return None
    number, given = float(m[1]), m[2]
    if not given:
        return number
    base = _unit_factor(unit)
    factor = _unit_factor(given)
    if base is None or factor is None or (given in _TIME_UNITS) != (_unit_name(unit) in
                                                                    _TIME_UNITS):
        return None
    return number * factor / base


def _unit_name(unit: str | None) -> str:
    return re.sub(r"^\d+", "", unit or "")


def _unit_factor(unit: str | None) -> float | None:
    m = re.match(r"^(\d*)([A-Za-z]+)$", unit or "")
    if not m:
        return None
    scale = float(m[1] or 1)
    name = m[2]
    if name in _MEMORY_UNITS:
        return scale * _MEMORY_UNITS[name]
    if name in _TIME_UNITS:
        return scale * _TIME_UNITS[name]
    return None
