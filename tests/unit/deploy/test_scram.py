from __future__ import annotations

import base64

from deploy import scram


def test_verifier_round_trip() -> None:
    v = scram.verifier("s3cret")
    assert v.startswith("SCRAM-SHA-256$4096:")
    assert scram.matches("s3cret", v)
    assert not scram.matches("other", v)


def test_matches_a_verifier_written_by_postgresql() -> None:
    # From PostgreSQL 15: CREATE ROLE vec PASSWORD 'pencil'; SELECT rolpassword FROM pg_authid.
    stored = (
        "SCRAM-SHA-256$4096:fiFt92xAkrAlce5AdH9NSA==$418YlqDUjPj2ju1rEW2Fyra2+G+ZTZChSp6FmXB4TS4="
        ":mBSKGZ0OPhCIG0sTx3OToYX4Sr2pgGdIQx4N06VfAaQ="
    )
    assert scram.matches("pencil", stored)
    assert not scram.matches("pencil2", stored)
    salt = base64.b64decode("fiFt92xAkrAlce5AdH9NSA==")
    assert scram.verifier("pencil", salt) == stored


def test_non_scram_values_never_match() -> None:
    assert not scram.matches("x", None)
    assert not scram.matches("x", "md5" + "0" * 32)
    assert not scram.matches("x", "x")
