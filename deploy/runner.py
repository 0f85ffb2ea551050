"""Run the deploy as a user would (`pyinfra -y inventory.py deploy.py`) and read pyinfra's own
results table: which operations changed something on which run. The idempotency tests and the
deploy benchmark are built on this."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_ROW = re.compile(r"^\s{4}(?P<op>\S.*?)\s{2,}(?P<hosts>\d+)\s+(?P<ok>\d+|-)\s+(?P<err>\d+|-)"
                  r"\s+(?P<nochange>\d+|-)\s*$")
_ERROR = re.compile(r"^\s+\[[^]]+\]\s+Error")
_HOST_LINE = re.compile(r"^\s+\[[^]]+\]")


@dataclass(frozen=True)
class DeployResult:
    returncode: int
    output: str
    seconds: float
    changed: list[str]  # operations that changed something on at least one host
    errors: list[str]
    total_ops: int

    def describe(self) -> str:
        return (f"rc={self.returncode} in {self.seconds:.1f}s, {len(self.changed)} changed, "
                f"{len(self.errors)} failed of {self.total_ops}")

    def report(self, tail: int = 3000) -> str:
        """For a test's failure message: the operations that failed, with their error lines,
        then the end of the output. (The results table alone misleads: pyinfra counts every
        operation a host did not reach after its failure as an error too.)"""
        return f"{failed_steps(self.output)}\n...\n{self.output[-tail:]}"


def parse_results(output: str) -> tuple[list[str], list[str], int]:
    """(changed operations, failed operations, operation count) from pyinfra's results table."""
    _, sep, table = output.partition("--> Results:")
    if not sep:
        return [], [], 0
    changed, errors, total = [], [], 0
    for line in table.splitlines():
        m = _ROW.match(line)
        if not m or m["op"].startswith("Grand total"):
            continue
        total += 1
        if m["ok"] != "-":
            changed.append(m["op"])
        if m["err"] != "-":
            errors.append(m["op"])
    return changed, errors, total


def failed_steps(output: str, context: int = 12) -> str:
    """The `--> Starting operation` headers of pyinfra's output with the hosts' error lines,
    each after up to ``context`` lines the same host printed before it in that operation (a
    command's output: an error line alone, `executed 0 commands`, says nothing of why)."""
    found: list[str] = []
    printed: list[str] = []  # host lines of the current operation
    header = ""
    for line in output.splitlines():
        if line.startswith("--> Starting operation"):
            header = line
            printed = []
        elif _ERROR.match(line):
            if header:
                found.append(header)
                header = ""
            prefix = line.split("]", 1)[0]
            found.extend([p for p in printed if p.split("]", 1)[0] == prefix][-context:])
            printed = [p for p in printed if p.split("]", 1)[0] != prefix]
            found.append(line)
        elif _HOST_LINE.match(line) and not line.rstrip().endswith(("] Skipped", "] Success")):
            printed.append(line)
    return "\n".join(found) or "(no operation reported an error)"


def run_deploy(env: dict[str, str] | None = None, extra_args: list[str] | None = None,
               timeout: float = 900, deploy_file: str = "deploy.py",
               cwd: Path = REPO) -> DeployResult:
    pyinfra = Path(sys.executable).with_name("pyinfra")
    cmd = [str(pyinfra), "-y", *(extra_args or []), "inventory.py", deploy_file]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    changed, errors, total = parse_results(output)
    return DeployResult(proc.returncode, output, time.monotonic() - started, changed, errors,
                        total)
