"""Uploads checked against one checksum fact per host: drop-ins for files.put and files.sync.

pyinfra's files.put asks three facts per file (File, its directory, Sha1File) and files.sync
three per file of the tree, each an SSH round trip, every deploy. Here every path the deploy
manages on a host is declared when its operation is (before any runs), and one fact, PathStates,
returns the type, mode, owner and SHA-1 of all of them in one `find` (deploy/factcache.py keeps
the answer until a command changes the host). An operation still changes exactly what differs,
so `did_change()` drives restarts as before; what differs is written as one tar archive and one
command per operation, not an upload plus chown plus chmod per file.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import shlex
import tarfile
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import IO, Any

from pyinfra import host, state
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation

_FILES: dict[str, set[str]] = {}  # host name -> paths whose own state is checked
_TREES: dict[str, set[str]] = {}  # host name -> directories listed recursively (sync)
_SUM = re.compile(r"^(?P<sum>[0-9a-f]{40})  (?P<path>/.*)$")


@dataclass(frozen=True)
class PathState:
    kind: str  # find's %y: f file, d directory, l symbolic link, ...
    mode: int  # as pyinfra writes modes: 644 for 0644
    user: str
    group: str
    sha1: str | None = None


class PathStates(FactBase[dict[str, PathState]]):
    """Type, mode, owner and SHA-1 of the given paths and of everything under the given trees."""

    def command(self, files: tuple[str, ...], trees: tuple[str, ...],
                dirs: tuple[str, ...] = ()) -> str:
        fmt = "'%y %m %u %g %p\\n'"
        parts = []
        if dirs:  # a directory and the files directly in it
            quoted = " ".join(shlex.quote(p) for p in dirs)
            parts.append(f"find {quoted} -maxdepth 1 -printf {fmt} "
                         "-type f -exec sha1sum {} + 2>/dev/null")
        if files:
            quoted = " ".join(shlex.quote(p) for p in files)
            parts.append(f"find {quoted} -maxdepth 0 -printf {fmt} "
                         "-type f -exec sha1sum {} + 2>/dev/null")
        if trees:
            quoted = " ".join(shlex.quote(p) for p in trees)
            parts.append(f"find {quoted} -printf {fmt} -type f -exec sha1sum {{}} + 2>/dev/null")
        return "; ".join([*parts, "true"])

    def process(self, output: list[str]) -> dict[str, PathState]:
        found: dict[str, PathState] = {}
        sums: dict[str, str] = {}
        for line in output:
            m = _SUM.match(line)
            if m:
                sums[m["path"]] = m["sum"]
                continue
            kind, mode, user, group, path = line.split(" ", 4)
            found[path] = PathState(kind, int(mode), user, group)
        return {p: PathState(s.kind, s.mode, s.user, s.group, sums.get(p))
                for p, s in found.items()}


def _declare(files: list[str] = (), trees: list[str] = ()) -> None:  # type: ignore[assignment]
    _FILES.setdefault(host.name, set()).update(files)
    _TREES.setdefault(host.name, set()).update(trees)


def _states(near: str | None = None) -> dict[str, PathState]:
    """Every declared path; while operations are still being declared (an operation's
    will_change asked then), the directory of `near`, so that several such questions about one
    directory (systemd units) share one answer."""
    if near and not state.is_executing:
        return host.get_fact(PathStates, files=(), trees=(), dirs=(posixpath.dirname(near),))
    return host.get_fact(PathStates, files=tuple(sorted(_FILES.get(host.name, ()))),
                         trees=tuple(sorted(_TREES.get(host.name, ()))))


def _mode(mode: str | int | None) -> int | None:
    """"0644" -> 644, as find's %m prints it and chmod takes it."""
    return None if mode is None else int(str(mode))


@dataclass(frozen=True)
class _Want:
    path: str
    content: bytes | None  # None: a directory
    mode: int | None
    user: str | None
    group: str | None


def _content(src: str | IO[Any]) -> bytes:
    if not isinstance(src, str):
        src.seek(0)
        data = src.read()
        return data.encode() if isinstance(data, str) else bytes(data)
    return Path(src).read_bytes()


def _apply(wants: list[_Want], states: dict[str, PathState], new_dirs: list[_Want],
           remove: list[str] = ()) -> Iterator[Any]:  # type: ignore[assignment]
    """Commands that bring `wants` about: one tar of the new or different contents (with their
    owner and mode), then one command for it and every metadata fix."""
    archive: list[_Want] = []
    fixes: list[str] = []
    for w in new_dirs:
        fixes.append(_mkdir(w))
    for w in wants:
        have = states.get(w.path)
        differs = (have is None or have.kind != ("d" if w.content is None else "f")
                   or (w.content is not None
                       and have.sha1 != hashlib.sha1(w.content).hexdigest()))
        if differs:
            archive.append(w)
            continue
        assert have is not None
        if w.mode is not None and have.mode != w.mode:
            fixes.append(f"chmod {w.mode} {shlex.quote(w.path)}")
        if (w.user and have.user != w.user) or (w.group and have.group != w.group):
            fixes.append(f"chown {_owner(w)} {shlex.quote(w.path)}")
    fixes += [f"rm -f {shlex.quote(p)}" for p in remove]
    if not archive and not fixes:
        return
    if archive:
        # Through a directory only the SSH user can read (the archive may hold a key), made
        # fresh (mkdir fails on an existing name), then unpacked with the deploy's privileges.
        temp = f"/tmp/bgdb-upload-{uuid.uuid4().hex}"
        yield StringCommand(f"mkdir -m 0700 {temp}", _sudo=False)
        yield FileUploadCommand(io.BytesIO(_tar(archive)), f"{temp}/files.tar",
                                remote_temp_filename=f"{temp}/upload.tar")
        fixes.insert(len(new_dirs), f"tar -xpf {temp}/files.tar -C / && rm -rf {temp}")
    yield StringCommand(" && ".join(fixes))


def _owner(w: _Want) -> str:
    return f"{w.user or ''}{':' + w.group if w.group else ''}"


def _mkdir(w: _Want) -> str:
    cmd = f"mkdir -p {shlex.quote(w.path)}"
    if w.user or w.group:
        cmd += f" && chown {_owner(w)} {shlex.quote(w.path)}"
    if w.mode is not None:
        cmd += f" && chmod {w.mode} {shlex.quote(w.path)}"
    return cmd


def _tar(wants: list[_Want]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for w in wants:
            info = tarfile.TarInfo(w.path.lstrip("/"))
            info.uname, info.gname = w.user or "root", w.group or "root"
            if w.content is None:
                info.type = tarfile.DIRTYPE
                info.mode = int(str(w.mode or 755), 8)
                tar.addfile(info)
            else:
                info.size = len(w.content)
                info.mode = int(str(w.mode or 644), 8)
                tar.addfile(info, io.BytesIO(w.content))
    return buf.getvalue()


def _missing_parent(path: str, states: dict[str, PathState], user: str | None,
                    group: str | None) -> list[_Want]:
    parent = posixpath.dirname(path)
    have = states.get(parent)
    if have is not None and have.kind == "d":
        return []
    return [_Want(parent, None, None, user, group)]


@operation()
def _put(src: str | IO[Any], dest: str, user: str | None = None, group: str | None = None,
         mode: str | int | None = None, create_remote_dir: bool = True
         ) -> Generator[Any, None, None]:
    states = _states(near=dest)
    want = _Want(dest, _content(src), _mode(mode), user, group)
    dirs = _missing_parent(dest, states, user, group) if create_remote_dir else []
    yield from _apply([want], states, dirs)


def put(*, name: str, src: str | IO[Any], dest: str, user: str | None = None,
        group: str | None = None, mode: str | int | None = None,
        create_remote_dir: bool = True, **op_args: Any) -> Any:
    """files.put for a file-like object or a local file, same arguments and change semantics."""
    _declare(files=[dest, posixpath.dirname(dest)])
    return _put(name=name, src=src, dest=dest, user=user, group=group, mode=mode,
                create_remote_dir=create_remote_dir, **op_args)


def _local_tree(src: Path, dest: str, exclude: list[str],
                exclude_dir: list[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """(remote file, local file) pairs and remote directories of a local tree, skipping what
    files.sync's exclude (the file's path) and exclude_dir (a directory's relative path) skip."""
    files: list[tuple[str, Path]] = []
    dirs = [dest]
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src).as_posix()
        for d in list(dirnames):
            child = d if rel == "." else f"{rel}/{d}"
            if any(fnmatch(child, x) for x in exclude_dir):
                dirnames.remove(d)
            else:
                dirs.append(posixpath.join(dest, child))
        for f in filenames:
            local = Path(dirpath) / f
            if any(fnmatch(str(local), x) for x in exclude):
                continue
            files.append((posixpath.normpath(posixpath.join(dest, rel, f)), local))
    return sorted(files), dirs


@operation()
def _sync(src: str, dest: str, mode: str | None, dir_mode: str | None, delete: bool,
          exclude: tuple[str, ...], exclude_dir: tuple[str, ...]) -> Generator[Any, None, None]:
    states = _states()
    files, dirs = _local_tree(Path(src), dest, list(exclude), list(exclude_dir))
    dmode = _mode(dir_mode or mode)
    new_dirs = [_Want(d, None, dmode, None, None) for d in dirs
                if states.get(d) is None or states[d].kind != "d"]
    wants = [_Want(d, None, dmode, None, None) for d in dirs
             if states.get(d) is not None and states[d].kind == "d"]
    wants += [_Want(r, local.read_bytes(), _mode(mode), None, None) for r, local in files]
    remove: list[str] = []
    if delete:
        keep = {r for r, _ in files}
        for path, have in states.items():
            inside = path.startswith(dest.rstrip("/") + "/")
            if not inside or have.kind not in ("f", "l") or path in keep:
                continue
            rel = posixpath.relpath(posixpath.dirname(path), dest)
            if any(fnmatch(path, x) for x in exclude) or (
                    rel != "." and any(fnmatch(rel, x) for x in exclude_dir)):
                continue
            remove.append(path)
    yield from _apply(wants, states, new_dirs, sorted(remove))


def sync(*, name: str, src: str, dest: str, mode: str | None = None,
         dir_mode: str | None = None, delete: bool = False,
         exclude: list[str] | None = None, exclude_dir: list[str] | None = None,
         **op_args: Any) -> Any:
    """files.sync of a local directory (files and directories; no symlinks, owner root), same
    change semantics: extra remote files are removed with delete=True, directories are kept."""
    _declare(files=[posixpath.dirname(dest)], trees=[dest])
    return _sync(name=name, src=src, dest=dest, mode=mode, dir_mode=dir_mode, delete=delete,
                 exclude=tuple(exclude or ()), exclude_dir=tuple(exclude_dir or ()), **op_args)
