"""Render the bundle's templates the way pyinfra does (StrictUndefined), without pyinfra, so unit
tests and the deploy produce the same bytes."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, **context: Any) -> str:
    return _env.get_template(name).render(**context)


def as_file(name: str, **context: Any) -> StringIO:
    """A rendered template as the file-like object files.put uploads (change = content hash)."""
    return StringIO(render(name, **context))
