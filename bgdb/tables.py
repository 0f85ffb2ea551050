"""Output of the operator commands: readable figures, rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

# (header, key, formatter) of one column.
Column = tuple[str, str, Any]


def duration(seconds: float | None) -> str:
    """12.3s, 4m 05s, 3h 07m, 2d 04h; '-' for nothing."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"


def size(n: float | None) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 12.0 GiB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def percent(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{float(x):.{digits}f}%"


def ratio(x: float | None) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def ms(x: float | None) -> str:
    return "-" if x is None else f"{float(x):,.1f} ms"


def timestamp(x: str | None) -> str:
    """An ISO timestamp from PostgreSQL's JSON, to the second, in UTC as given."""
    if not x:
        return "-"
    try:
        return datetime.fromisoformat(x).strftime("%Y-%m-%d %H:%M:%S%z")
    except ValueError:
        return str(x)


def text(x: Any, width: int = 80) -> str:
    if x is None:
        return "-"
    s = " ".join(str(x).split())  # one line: queries have newlines
    return s if len(s) <= width else s[: width - 1] + "…"


def plain(x: Any) -> str:
    return "-" if x is None else str(x)


def table(title: str, columns: Sequence[Column], rows: Sequence[dict[str, Any]],
          *, empty: str = "none", show_header: bool = True) -> Table:
    t = Table(title=title or None, title_justify="left", title_style="bold", expand=False,
              show_header=show_header)
    for header, _, _ in columns:
        t.add_column(header, overflow="fold")
    for row in rows:
        t.add_row(*[(fmt or plain)(row.get(key)) for _, key, fmt in columns])
    if not rows:
        t.add_row(*([f"[dim]{empty}[/dim]"] + [""] * (len(columns) - 1)))
    return t


def console() -> Console:
    # Wide enough for query texts when the output goes to a file or a pipe.
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
