"""pyinfra's operation ordering without reading source files.

pyinfra orders operations by the line numbers of the deploy code that declared them, taken from
`inspect.stack()` for every operation on every host: that reads and tokenizes the source of
each of ~25 frames (findsource, getmodule over sys.modules) when only the file name and line
number are used; it was the largest CPU cost of a no-change deploy after the SSH round trips.
These give the same names and numbers (a frame's getframeinfo().filename is its code's
co_filename: inspect falls back to it whenever the source file cannot be named otherwise).
"""

from __future__ import annotations

import sys
from types import FrameType, SimpleNamespace

import pyinfra.api.util as pyinfra_util


def stack() -> list[tuple[FrameType]]:
    """inspect.stack()'s frames, the caller's first, as 1-tuples (pyinfra reads item [0])."""
    frames = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        frames.append((frame,))
        frame = frame.f_back
    return frames


def getframeinfo(frame: FrameType) -> SimpleNamespace:
    return SimpleNamespace(filename=frame.f_code.co_filename, lineno=frame.f_lineno)


def install() -> None:
    pyinfra_util.stack = stack  # type: ignore[assignment]
    pyinfra_util.getframeinfo = getframeinfo  # type: ignore[assignment]
