"""psycopg 3 for the bundle's programs on a database host (bgdb.migrate, the exporter).

Debian 12 and 13 ship it (python3-psycopg 3.1, 3.2). Debian 11 ships only psycopg2, so there the
deploy brings psycopg's pure-Python wheel of the 3.2 series (the last for Python 3.9, which
bullseye has) and the typing_extensions it needs: downloaded once on the controller with pip,
uploaded as wheel files and put on python3's path by a .pth file (Python imports a pure wheel as
a zip). It uses the distribution's libpq5 like python3-psycopg does.
"""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from pathlib import Path

from deploy import aptbatch, uploads
from deploy.hostfacts import HostFacts

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "wheels"  # gitignored
WHEELS = ("psycopg-3.2.13-py3-none-any.whl", "typing_extensions-4.16.0-py3-none-any.whl")
REMOTE_DIR = "/usr/local/lib/bgdb/wheels"
NO_PSYCOPG3 = {("debian", "11")}  # releases without python3-psycopg
PTH = "/usr/local/lib/python3.9/dist-packages/bgdb-psycopg.pth"  # bullseye's python3 reads it


def apt_packages(facts: HostFacts) -> list[str]:
    """The distribution packages that give python3 psycopg 3 (libpq5 alone where we bring it)."""
    return ["libpq5"] if needs_wheels(facts) else ["python3-psycopg"]


def needs_wheels(facts: HostFacts) -> bool:
    return (facts.os_id, facts.os_version) in NO_PSYCOPG3


def local_wheels() -> list[Path]:
    """The pinned wheels in the controller's cache, fetched from PyPI on first use."""
    missing = [w for w in WHEELS if not (CACHE / w).exists()]
    if missing:
        CACHE.mkdir(parents=True, exist_ok=True)
        specs = [w.split("-")[0] + "==" + w.split("-")[1] for w in missing]
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.9", "--dest", str(CACHE),
                        *specs], check=True)
    return [CACHE / w for w in WHEELS]


def install_psycopg(facts: HostFacts) -> None:
    aptbatch.install(name="Install psycopg 3 for the bundle's programs on the host",
                     packages=apt_packages(facts), cache_time=86400, no_recommends=True)
    if not needs_wheels(facts):
        return
    for wheel in local_wheels():
        uploads.put(name=f"Upload {wheel.name} (no python3-psycopg on {facts.describe})",
                    src=str(wheel), dest=f"{REMOTE_DIR}/{wheel.name}", mode="0644",
                    create_remote_dir=True)
    pth = "".join(f"{REMOTE_DIR}/{w}\n" for w in WHEELS)
    uploads.put(name="Put the psycopg wheels on python3's path",
                src=StringIO(pth), dest=PTH, mode="0644", create_remote_dir=True)
