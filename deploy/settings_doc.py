"""docs/settings.md, generated from the schema: `python -m deploy.settings_doc [--check]`.

A unit test (tests/unit/deploy/test_settings_doc.py) fails when the file is not what the schema
gives, so the reference cannot drift from the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deploy import overrides
from deploy.settings_schema import KEYS_LIST, Key

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
CONCERNS = {
    "app": "The agents' application database (the seed's POSTGRESQL_* variables win)",
    "postgres": "PostgreSQL server",
    "audit": "Audit logging (pgaudit, CIS 3.2)",
    "security": "Hardening (CIS PostgreSQL Benchmark; `bgdb check` reports each control)",
    "replicas": "Read replicas",
    "ha": "High availability (Patroni + etcd; `postgres_ha`)",
    "backup": "Backups (pgBackRest, pg_dump); schedules are systemd OnCalendar expressions",
    "maintenance": "Scheduled maintenance (primary only)",
    "upgrades": "Security updates (unattended-upgrades)",
    "pgbouncer": "PgBouncer",
    "exporter": "The bgdb exporter",
    "monitoring": "Prometheus, Alertmanager, node exporters (the `monitoring` group)",
    "readiness": "Readiness evidence (`bgdb check`)",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(key: Key) -> str:
    default = "None" if key.default is None else json.dumps(key.default)
    env = f" `{key.env}` wins." if key.env else ""
    return (f"| `{key.name}` | {_cell(key.kind.allowed)} | `{_cell(default)}` | "
            f"{_cell(key.help)}.{env} |")


def render() -> str:
    lines = [
        "# Settings reference",
        "",
        "Generated from `deploy/settings_schema.py` by `python -m deploy.settings_doc`; do not",
        "edit. Set keys in `group_data/all.py` (or `group_data/<group>.py`), a host's `data` in",
        "the hosts file, or `BGDB_EXTRA_DATA` (JSON, one run), each winning over the one before.",
        "A bad value or an unknown key stops the deploy before any host is contacted, with one",
        "line naming the key, the value, where it came from and what is allowed. Keys that",
        "pyinfra or the inventory set (`ssh_*`, `_sudo`, `service_address`, ...) are known too.",
    ]
    for concern, title in CONCERNS.items():
        lines += ["", f"## {title}", "", "| key | allowed | default | meaning |",
                  "|---|---|---|---|"]
        lines += [_row(k) for k in KEYS_LIST if k.concern == concern]
    shipped = ", ".join(str(m) for m in overrides.SHIPPED_MAJORS)
    lines += [
        "",
        "## What `postgres_overrides` may not set",
        "",
        "Settings the bundle guarantees are refused, with the key that sets them:",
        "",
        "| setting | why, and what to set instead |",
        "|---|---|",
    ]
    by_reason: dict[str, list[str]] = {}
    for name, why in overrides.OWNED.items():
        by_reason.setdefault(why, []).append(f"`{name}`")
    lines += [f"| {', '.join(names)} | {_cell(why)} |" for why, names in by_reason.items()]
    lines += [f"| `{name}` | only {', '.join(values)} |"
              for name, values in sorted(overrides.NARROWED.items())]
    lines += [
        "| `pgaudit.*` | set by the `postgres_pgaudit*` keys |",
        "| `shared_preload_libraries` | may add libraries, must keep pg_stat_statements (and "
        "pgaudit while `postgres_pgaudit` is on) |",
        "",
        "A value with a control character (a newline would start a second setting) or a",
        "backslash (it escapes the closing quote) is refused. Every other name and value is",
        "checked against `pg_settings` of the target major (name, type, range with units, enum",
        f"values): tables for PostgreSQL {shipped} (Debian 11, 12 and 13) are in",
        "`deploy/pg_settings/`, made from Debian's packages by `deploy/pg_settings/generate.sh`.",
        "With `postgres_version` unset, an override must suit every one of them. **Not checked",
        "against pg_settings**: PostgreSQL 12, 14 and 16 (no table shipped: no Debian release",
        "has them), where only the rules above apply; and settings of extensions other than",
        "pg_stat_statements (another prefix, such as `auto_explain.*`), which PostgreSQL itself",
        "accepts as placeholders.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run python -m deploy.settings_doc", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
