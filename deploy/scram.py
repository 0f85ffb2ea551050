"""SCRAM-SHA-256 verifiers as PostgreSQL stores them in pg_authid.rolpassword (RFC 5802/7677).

Lets the deploy set a password idempotently without sending the plaintext: recompute the verifier
with the stored salt and iteration count; only a mismatch is a change. The plaintext never leaves
the controller; the server receives a verifier, which PostgreSQL stores as is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from deploy.saslprep import saslprep

ITERATIONS = 4096  # PostgreSQL's default scram_iterations
_VERIFIER = re.compile(
    r"^SCRAM-SHA-256\$(?P<iter>\d+):(?P<salt>[A-Za-z0-9+/=]+)\$(?P<stored>[A-Za-z0-9+/=]+)"
    r":(?P<server>[A-Za-z0-9+/=]+)$"
)


def verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = os.urandom(16) if salt is None else salt
    # The bytes PostgreSQL and libpq hash: SASLprep'd, or the raw bytes where it does not apply.
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
            f"${b64(stored_key).decode()}:{b64(server_key).decode()}")


def matches(password: str, stored: str | None) -> bool:
    """True when `stored` (rolpassword) is a SCRAM verifier of `password`."""
    m = _VERIFIER.match(stored or "")
    if not m:
        return False  # no password, md5, or plaintext: must be (re)set
    expected = verifier(password, base64.b64decode(m["salt"]), int(m["iter"]))
    return hmac.compare_digest(expected, stored or "")
