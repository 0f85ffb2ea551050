"""SASLprep as PostgreSQL does it (src/common/saslprep.c): RFC 4013's examples, and
PostgreSQL's own rule that a password SASLprep cannot take is hashed as its raw bytes."""

from __future__ import annotations

import pytest

from deploy import scram
from deploy.saslprep import saslprep


@pytest.mark.parametrize(("password", "prepared"), [
    # RFC 4013 section 3
    ("I\u00adX", b"IX"),  # SOFT HYPHEN mapped to nothing
    ("user", b"user"),
    ("USER", b"USER"),  # case preserved
    ("\u00aa", b"a"),  # NFKC
    ("\u2168", b"IX"),  # ROMAN NUMERAL NINE, NFKC
    # mapping: non-ASCII spaces to SPACE, zero-width characters to nothing
    ("pass\u00a0word", b"pass word"),
    ("pass\u200bword", b"password"),
    ("mot de passe \u00e9t\u00e9", "mot de passe \u00e9t\u00e9".encode()),
    ("e\u0301te\u0301", "\u00e9t\u00e9".encode()),  # NFD input: composed
    ("\uff30\uff41\uff53\uff53", b"Pass"),  # fullwidth letters, NFKC
    ("\u05d0\u05d1", "\u05d0\u05d1".encode()),  # right-to-left only: allowed
])
def test_prepared_as_rfc_4013_says(password: str, prepared: bytes) -> None:
    assert saslprep(password) == prepared


@pytest.mark.parametrize("password", [
    "\u0007",  # RFC 4013 example: prohibited (ASCII: PostgreSQL uses it as is)
    "\u0627\u0031",  # RFC 4013 example: bidi rule broken
    "a\u0627",  # RandALCat and LCat mixed
    "pass\u0080word",  # control character (C.2.2)
    "pass\ue000word",  # private use (C.3)
    "pass\u0221word",  # unassigned in Unicode 3.2 (A.1)
    "\u00ad",  # empty after mapping
    "\udcffx",  # not UTF-8: byte 0xff as os.environ's surrogate escape
])
def test_what_saslprep_refuses_is_hashed_as_raw_bytes(password: str) -> None:
    assert saslprep(password) == password.encode("utf-8", "surrogateescape")


def test_verifier_hashes_the_prepared_password() -> None:
    salt = b"0123456789abcdef"
    assert scram.verifier("I\u00adX", salt) == scram.verifier("IX", salt)
    assert scram.verifier("\u2168", salt) == scram.verifier("IX", salt)
    assert scram.verifier("\uff30\uff41\uff53\uff53", salt) == scram.verifier("Pass", salt)
    assert scram.verifier("\u00e9t\u00e9", salt) != scram.verifier("ete", salt)
    stored = scram.verifier("p\u00e4ss w\u00f6rd \u2603")
    assert scram.matches("p\u00e4ss w\u00f6rd \u2603", stored)
    assert scram.matches("pa\u0308ss w\u00f6rd \u2603", stored)  # NFD input, same password
