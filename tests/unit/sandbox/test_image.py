"""Base images per Debian release: which ones a rebuild may delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import image, paths
from sandbox.run import SandboxError


def test_debian_12_keeps_its_recipe_id() -> None:
    """Labs already running from the Debian 12 image keep it: its id predates the releases."""
    assert image.image_id() == image.image_id("12") == "5bf66572c9ff"
    assert len({image.image_id(r) for r in image.RELEASES}) == 3


def test_unknown_release_is_one_line() -> None:
    with pytest.raises(SandboxError, match="release '10': expected one of 11, 12, 13"):
        image.suite_of("10")


def test_a_rebuild_deletes_only_its_own_release_and_nothing_mounted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "IMAGES", tmp_path)
    for name in ("bookworm-old", "bookworm-new", "bookworm-x.building", "bullseye-aaa",
                 "trixie-bbb", "bookworm-mounted"):
        (tmp_path / name).mkdir()
    mounts = (f"overlay /labs/a/root overlay rw,lowerdir={tmp_path / 'bookworm-mounted'},"
              "upperdir=/u,workdir=/w 0 0\n")
    stale = image.stale_images("bookworm", tmp_path / "bookworm-new", mounts)
    assert sorted(p.name for p in stale) == ["bookworm-old", "bookworm-x.building"]
