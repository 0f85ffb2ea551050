"""The agents' environment file: KEY=value lines with the seed's POSTGRESQL_* settings.

Written in the subset that systemd's EnvironmentFile, docker's --env-file, python-dotenv and a
shell's `. file` all read the same way: one KEY=value per line, the value unquoted when it is
plain and in single quotes otherwise (a value containing a single quote or a newline is refused).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from bgdb.sqlite_migration import MigrationError

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@%+,=-]*$")


class EnvFileError(MigrationError):
    pass


def parse(text: str) -> dict[str, str]:
    """KEY=value lines; '#' comments, blank lines and `export ` are allowed; quotes removed."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if match.group(2).startswith('"'):
                value = re.sub(r'\\(["\\$`])', r"\1", value)
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key] = value
    return out


def read(path: Path) -> dict[str, str]:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot read the environment file: "
                           f"{exc.strerror or exc}") from exc


def format_value(key: str, value: str) -> str:
    if _PLAIN.match(value):
        return value
    if "'" in value or "\n" in value or "\r" in value:
        raise EnvFileError(f"{key}: a value with a single quote or a newline cannot be written"
                           " portably to an environment file")
    return f"'{value}'"


def render(values: Mapping[str, str], existing: str = "", prefix: str = "POSTGRESQL_") -> str:
    """The file's new text: lines for `values` replace those keys (and every other `prefix`
    key) in `existing`, in place; other lines and comments are kept."""
    lines: list[str] = []
    written: set[str] = set()
    for line in existing.splitlines():
        match = _LINE.match(line)
        key = match.group(1) if match and not line.lstrip().startswith("#") else None
        if key is not None and (key in values or key.startswith(prefix)):
            if key in values and key not in written:
                lines.append(f"{key}={format_value(key, values[key])}")
                written.add(key)
            continue
        lines.append(line)
    for key, value in values.items():
        if key not in written:
            lines.append(f"{key}={format_value(key, value)}")
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a file only its owner can read (0600 from creation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask did
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
