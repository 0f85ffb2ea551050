"""deploy/factcache.py and deploy/opstack.py on plain data: the batched Directory fact parses
as pyinfra's own does, and the fast stack gives pyinfra the same file names and line numbers."""

from __future__ import annotations

import inspect

from pyinfra.facts.files import Directory

from deploy import opstack
from deploy.factcache import _END, Directories, _one_unit

STAT = "user=root group=postgres mode=drwxr-x--- atime=1700000000 mtime=1700000000 " \
       "ctime=1700000000 size=4096 '/etc/bgdb'"


def test_directories_answers_each_path_as_pyinfra_would() -> None:
    fact = Directories()
    fact.command(paths=("/etc/bgdb", "/missing", "/etc/passwd"))
    out = [STAT, f"{_END} 0", f"{_END} 0", "garbage", f"{_END} 1"]
    found = fact.process(out)
    assert found["/etc/bgdb"] == Directory().process([STAT])
    assert found["/missing"] is None and found["/etc/passwd"] is None


def test_only_single_system_unit_questions_are_batched() -> None:
    from pyinfra.facts.systemd import SystemdStatus
    assert _one_unit(SystemdStatus, (), {"services": ["a.service"], "user_mode": False,
                                         "machine": None, "user_name": None}) == "a.service"
    assert _one_unit(SystemdStatus, (), {"services": ["a.service"], "user_mode": True}) is None
    assert _one_unit(SystemdStatus, (), {"services": None}) is None


def test_fast_stack_matches_inspect() -> None:
    ours = [(opstack.getframeinfo(f).filename, opstack.getframeinfo(f).lineno)
            for (f,) in opstack.stack()]
    theirs = [(i.filename, i.lineno) for i in inspect.stack()]
    assert ours[1:] == theirs[1:]  # [0] is this line: the two calls sit on different lines
    assert ours[0][0] == theirs[0][0]
