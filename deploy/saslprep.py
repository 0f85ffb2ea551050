"""SASLprep (RFC 4013) of a password, exactly as PostgreSQL does it (src/common/saslprep.c).

libpq prepares the password a client sends the same way, so a verifier computed from the
prepared bytes lets any Unicode password log in, directly and through PgBouncer. PostgreSQL's
rules, kept here: ASCII is used as is; invalid UTF-8, an empty result or a prohibited character
means the raw bytes are used (not an error); the prohibited and bidi checks look at the mapped
characters before NFKC, as saslprep.c does. Python's stringprep holds RFC 3454's tables
(Unicode 3.2), the ones the RFC names; a character unassigned in 3.2 is prohibited, so NFKC's
newer Unicode version changes nothing for a password that gets through.
"""

from __future__ import annotations

import stringprep
import unicodedata
from collections.abc import Callable

# RFC 4013 section 2.3: prohibited output (C.1.2 is mapped to a space before this check).
_PROHIBITED: tuple[Callable[[str], bool], ...] = (
    stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
    stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
    stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
    stringprep.in_table_a1,  # unassigned code points: prohibited in stored strings
)


def saslprep(password: str | bytes) -> bytes:
    """The bytes PostgreSQL and libpq hash for `password`. A str from the environment may hold
    invalid UTF-8 as surrogate escapes (os.environ): those bytes are used as they came."""
    raw = password if isinstance(password, bytes) else password.encode("utf-8", "surrogateescape")
    if raw.isascii():
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw  # SASLPREP_INVALID_UTF8
    # Non-ASCII spaces first: U+200B is in both tables, and saslprep.c makes it a space.
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text
                     if stringprep.in_table_c12(c) or not stringprep.in_table_b1(c))
    if not mapped or any(check(c) for c in mapped for check in _PROHIBITED):
        return raw  # SASLPREP_PROHIBITED
    if any(stringprep.in_table_d1(c) for c in mapped) and (
            any(stringprep.in_table_d2(c) for c in mapped)
            or not stringprep.in_table_d1(mapped[0]) or not stringprep.in_table_d1(mapped[-1])):
        return raw  # RFC 3454 section 6: bidi rules broken
    return unicodedata.normalize("NFKC", mapped).encode("utf-8")
