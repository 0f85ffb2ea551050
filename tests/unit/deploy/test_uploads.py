"""deploy/uploads.py on plain data: the checksum fact's parser, the change decision, the archive."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from pyinfra.api import FileUploadCommand, StringCommand

from deploy import uploads
from deploy.uploads import PathState, PathStates, _apply, _local_tree, _Want

SUM = hashlib.sha1(b"x = 1\n").hexdigest()


def test_path_states_parses_find_output() -> None:
    out = ["d 755 root root /etc/bgdb", "f 640 postgres postgres /etc/bgdb/a.conf",
           f"{SUM}  /etc/bgdb/a.conf", "l 777 root root /etc/bgdb/link"]
    states = PathStates().process(out)
    assert states["/etc/bgdb"] == PathState("d", 755, "root", "root")
    assert states["/etc/bgdb/a.conf"] == PathState("f", 640, "postgres", "postgres", SUM)
    assert states["/etc/bgdb/link"].kind == "l"


def test_path_states_is_one_command_for_files_and_trees() -> None:
    cmd = PathStates().command(files=("/etc/a b", "/etc/c"), trees=("/opt/t",))
    assert cmd.count("find ") == 2 and "'/etc/a b'" in cmd and cmd.endswith("true")


def _commands(wants: list[_Want], states: dict[str, PathState]) -> list[object]:
    return list(_apply(wants, states, []))


def test_same_content_mode_and_owner_changes_nothing() -> None:
    want = _Want("/etc/a.conf", b"x = 1\n", 640, "postgres", "postgres")
    have = {"/etc/a.conf": PathState("f", 640, "postgres", "postgres", SUM)}
    assert _commands([want], have) == []


def test_unset_mode_and_owner_are_not_compared() -> None:
    want = _Want("/etc/a.conf", b"x = 1\n", None, None, None)
    assert _commands([want], {"/etc/a.conf": PathState("f", 600, "nobody", "nogroup", SUM)}) == []


def test_mode_or_owner_only_is_fixed_without_upload() -> None:
    want = _Want("/etc/a.conf", b"x = 1\n", 640, "postgres", "postgres")
    have = {"/etc/a.conf": PathState("f", 644, "root", "postgres", SUM)}
    (cmd,) = _commands([want], have)
    assert isinstance(cmd, StringCommand)
    assert str(cmd) == "chmod 640 /etc/a.conf && chown postgres:postgres /etc/a.conf"


def test_new_or_different_content_is_one_archive_and_one_command() -> None:
    wants = [_Want("/etc/a.conf", b"x = 2\n", 600, "postgres", "postgres"),
             _Want("/etc/b.conf", b"new\n", None, None, None)]
    have = {"/etc/a.conf": PathState("f", 600, "postgres", "postgres", SUM)}
    mkdir, upload, unpack = _commands(wants, have)
    assert isinstance(upload, FileUploadCommand)
    assert "mkdir -m 0700" in str(mkdir) and "tar -xpf" in str(unpack)
    with tarfile.open(fileobj=io.BytesIO(upload.src.getvalue())) as tar:  # type: ignore[union-attr]
        a, b = tar.getmembers()
        assert (a.name, a.mode, a.uname, a.gname) == ("etc/a.conf", 0o600, "postgres", "postgres")
        assert (b.name, b.mode, b.uname) == ("etc/b.conf", 0o644, "root")
        assert tar.extractfile(a).read() == b"x = 2\n"  # type: ignore[union-attr]


def test_local_tree_skips_excluded_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("a")
    (tmp_path / "pkg" / "a.pyc").write_text("junk")
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_text("junk")
    (tmp_path / "top.sql").write_text("select 1")
    files, dirs = _local_tree(tmp_path, "/opt/x", ["*.pyc"], ["__pycache__", "*/__pycache__"])
    assert [r for r, _ in files] == ["/opt/x/pkg/a.py", "/opt/x/top.sql"]
    assert dirs == ["/opt/x", "/opt/x/pkg"]


def test_mode_strings_read_as_find_prints_them() -> None:
    assert uploads._mode("0644") == 644 and uploads._mode(600) == 600
    assert uploads._mode(None) is None
