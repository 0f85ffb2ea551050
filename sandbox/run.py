"""Running commands for the sandbox: loud on failure, quiet otherwise."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class SandboxError(RuntimeError):
    """A sandbox step failed; the message says which and why."""


def run(cmd: Sequence[str], *, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise SandboxError(
            f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"
        )
    return proc.stdout


def ok(cmd: Sequence[str]) -> bool:
    """Run a command whose failure is an answer, not an error (e.g. 'does this exist')."""
    return subprocess.run(list(cmd), capture_output=True).returncode == 0
