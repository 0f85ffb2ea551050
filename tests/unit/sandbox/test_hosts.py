"""The sandbox's cgroup walk, fed a plain directory tree standing in for /sys/fs/cgroup."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox import hosts, paths

WalkEntry = tuple[str, list[str], list[str]]


@pytest.fixture()
def cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "CGROUP_V1", tmp_path / "v1")
    monkeypatch.setattr(paths, "CGROUP_V2", tmp_path / "v2")
    return tmp_path / "v1"


def test_pids_of_every_nested_cgroup(cgroups: Path) -> None:
    scope = cgroups / "lab-db1" / "payload" / "user.slice" / "session-c1.scope"
    scope.mkdir(parents=True)
    (cgroups / "lab-db1" / "cgroup.procs").write_text("10\n")
    (scope / "cgroup.procs").write_text("12\n11\n")
    assert hosts._cgroup_pids("lab-db1") == [10, 11, 12]


@pytest.mark.parametrize("when", ["before it is listed", "after it is listed"])
def test_a_scope_that_vanishes_during_the_walk_is_skipped(
    cgroups: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """CI's teardown failed with FileNotFoundError when systemd removed a session scope while
    the walk was in it: the walk now reads what is still there."""
    base = cgroups / "lab-db1"
    gone = base / "payload" / "session-c14.scope"
    gone.mkdir(parents=True)
    (base / "cgroup.procs").write_text("10\n")
    walk = os.walk

    def racing_walk(top: Path, onerror: Callable[[OSError], object]) -> Iterator[WalkEntry]:
        for entry in walk(top, onerror=onerror):
            yield entry
            trigger = base / "payload" if when == "before it is listed" else gone
            if Path(entry[0]) == trigger:
                gone.rmdir()

    monkeypatch.setattr(os, "walk", racing_walk)
    assert hosts._cgroup_pids("lab-db1") == [10]


def test_no_cgroup_no_pids(cgroups: Path) -> None:
    assert hosts._cgroup_pids("lab-db1") == []


def test_rmdir_tree_removes_deepest_first(cgroups: Path) -> None:
    deep = cgroups / "lab-db1" / "a" / "b"
    deep.mkdir(parents=True)
    hosts._remove_cgroup("lab-db1")
    assert not (cgroups / "lab-db1").exists()
