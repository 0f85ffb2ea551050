"""Running commands for the sandbox: loud on failure, quiet otherwise."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


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


def running(pid: int) -> bool:
    """The process exists and is not a zombie (a killed child of ours is reaped here; one of
    another process's children stays listed as a zombie until its parent waits for it)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        # The state follows the command name, which may itself hold spaces or parentheses.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
