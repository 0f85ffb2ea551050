"""Secrets live outside the repo's tracked files: the environment, or a 0700 directory.

Default directory: `.secrets/` beside inventory.py (gitignored), or $BGDB_SECRETS_DIR. Passwords are
generated on first use (256 bits, URL-safe) into 0600 files, so a fresh checkout needs no setup and
nothing secret is ever committed or printed.
"""

from __future__ import annotations

import os
import re
import secrets as _random
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class SecretError(RuntimeError):
    """A secret is missing or unreadable; the message names it and where it was looked for."""


def secrets_dir() -> Path:
    path = Path(os.environ.get("BGDB_SECRETS_DIR", REPO / ".secrets"))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _secret_file(kind: str, name: str) -> Path:
    if not _NAME.match(name):
        raise SecretError(f"invalid secret name {name!r}")
    d = secrets_dir() / kind
    d.mkdir(mode=0o700, exist_ok=True)
    return d / name


def password(name: str, *, env: str | None = None, generate: bool = True) -> str:
    """The password for role `name`: from $env if set, else its file, else a new random one."""
    if env and os.environ.get(env):
        return os.environ[env]
    path = _secret_file("passwords", name)
    if path.exists():
        value = path.read_text().strip()
        if not value:
            raise SecretError(f"secret file {path} is empty")
        return value
    if not generate:
        where = f"${env} or {path}" if env else str(path)
        raise SecretError(f"no password for {name}: set {where}")
    value = _random.token_urlsafe(32)
    write_private(path, value + "\n")
    return value


def write_private(path: Path, content: str | bytes) -> None:
    """Create or replace a file readable by its owner only, never briefly world-readable."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    tmp.replace(path)


def ssh_keypair(name: str) -> tuple[str, str]:
    """(private key in OpenSSH format, public key line) of a key pair the bundle uses between
    its hosts, generated on first use (ed25519) into the secrets directory."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = _secret_file("ssh", name)
    if path.exists():
        key = serialization.load_ssh_private_key(path.read_bytes(), None)
    else:
        key = Ed25519PrivateKey.generate()
        write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    private = path.read_text()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} bgdb-{name}"
