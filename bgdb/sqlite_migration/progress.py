"""A tqdm-like progress line on stderr.

On a terminal the line is redrawn in place at most 10 times a second; otherwise (CI logs, pipes) a
plain line is printed every 10 seconds and at the end, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, label: str, total: int, *, stream: TextIO | None = None,
                 enabled: bool = True, width: int = 24) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        # A terminal gets its first line at once; a log only after the first interval.
        self._last_draw = 0.0 if self.tty else self.start
        self._closed = False

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            return (f"{self.label} {frac * 100:3.0f}% |{bar}| {self.done}/{self.total}"
                    f" [{_clock(elapsed)}<{_clock(eta)}, {rate:,.0f} rows/s]")
        return f"{self.label} {self.done} rows [{_clock(elapsed)}, {rate:,.0f} rows/s]"

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= (0.1 if self.tty else 10.0):
            self._draw()
            self._last_draw = now

    def _draw(self, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and not self._closed:
            self._draw(final=True)
        self._closed = True
