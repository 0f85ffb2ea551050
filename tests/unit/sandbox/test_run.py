"""sandbox.run.running: what `sandbox down` and the apt proxy's stop wait on."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from sandbox.run import running


def test_a_live_process_is_running() -> None:
    assert running(os.getpid())


def test_a_killed_child_is_not_running_once_killed() -> None:
    """The kill leaves a zombie until someone waits; `running` reaps its own children."""
    child = subprocess.Popen(["sleep", "30"])
    assert running(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while running(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not running(child.pid)


def test_a_zombie_of_another_parent_is_not_running() -> None:
    """A grandchild killed while its parent does not wait stays a zombie: gone for our purposes."""
    parent = subprocess.Popen(
        ["python3", "-c", "import subprocess, time, sys; p = subprocess.Popen(['sleep', '30']);"
         " print(p.pid, flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        grandchild = int(parent.stdout.readline())
        assert running(grandchild)
        os.kill(grandchild, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while running(grandchild) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not running(grandchild)
        assert os.path.exists(f"/proc/{grandchild}")  # still listed: a zombie, not reaped
    finally:
        parent.kill()
        parent.wait()


def test_no_such_process() -> None:
    assert not running(2**22 + 1)  # above the kernel's pid_max
