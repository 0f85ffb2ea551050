"""SASLprep as PostgreSQL does it (src/common/saslprep.c): RFC 4013's examples, PostgreSQL's own
rule that a password SASLprep cannot take is hashed as its raw bytes, and libpq's own verifiers
(the same saslprep.c) for fixed and pseudo-random Unicode passwords."""

from __future__ import annotations

import random

import pytest
from psycopg import pq

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
    ("pass\u200bword", b"pass word"),  # ZERO WIDTH SPACE is a space first (saslprep.c)
    ("pass\u200cword", b"password"),
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


def libpq_verifier(password: bytes) -> str:
    """A verifier made by libpq's PQencryptPasswordConn: PostgreSQL's own saslprep.c (psycopg's
    bundled libpq; no server is contacted, the connection is never made)."""
    conn = pq.PGconn.connect_start(b"host=/nonexistent port=1")
    try:
        return conn.encrypt_password(password, b"bgdb", b"scram-sha-256").decode()
    finally:
        conn.finish()


ORACLE_CASES = [
    "I\u00adX", "\u2168", "\u00aa", "pass\u00a0word", "pass\u200bword", "e\u0301te\u0301",
    "\uff30\uff41\uff53\uff53", "\u05d0\u05d1", "\u0007", "\u0627\u0031", "a\u0627",
    "pass\u0080word", "pass\ue000word", "pass\u0221word", "\u00ad", "p\u00e4ss w\u00f6rd \u2603",
    "\U0001f600emoji", "\u2126\u212b", "\ufb01ne", "\u3000ideographic space",
]


def _random_passwords(count: int) -> list[str]:
    rng = random.Random(20)  # fixed: the same cases every run
    blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
              (0x2000, 0x206f), (0x2100, 0x218f), (0x3000, 0x30ff), (0x4e00, 0x4eff),
              (0xfb00, 0xfb4f), (0xfe00, 0xfe0f), (0xff00, 0xffef), (0x1f300, 0x1f5ff)]
    out = []
    for _ in range(count):
        chars = []
        for _ in range(rng.randint(1, 12)):
            lo, hi = rng.choice(blocks)
            chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars))
    return out


@pytest.mark.parametrize("password", ORACLE_CASES + _random_passwords(150))
def test_our_verifier_matches_the_one_libpq_makes(password: str) -> None:
    raw = password.encode("utf-8", "surrogateescape")
    assert scram.matches(password, libpq_verifier(raw)), saslprep(password)


def test_invalid_utf8_matches_libpq_too() -> None:
    password = b"p\xffss\xc3"
    assert scram.matches(password.decode("utf-8", "surrogateescape"), libpq_verifier(password))
