"""What the adapter needs to know about a statement's text, without a server round trip.

The seed writes `$1, $2, ...` placeholders (PostgreSQL's own syntax, passed through unchanged by
psycopg's raw cursors). Before sending, the adapter checks that the arguments match the
placeholders (a clear error instead of the server's "bind message supplies 2 parameters..."), and
decides whether a statement may be retried after a lost connection:

  * reads (SELECT/VALUES/TABLE/SHOW/EXPLAIN without ANALYZE, WITH without a data-modifying
    statement) are retried freely;
  * everything else is treated as a write whose outcome must be established before a retry.

The scanner skips string literals ('...', E'...' with backslash escapes), quoted identifiers,
-- and nested /* */ comments and dollar-quoted bodies ($$...$$, $tag$...$tag$), so a `$1` or an
`INSERT` inside them does not count. A SELECT that calls a function which writes cannot be seen
from the text: pass idempotent=False for those.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_WORD_START = re.compile(r"[A-Za-z_\u0080-\uffff]")
_WORD = re.compile(r"[A-Za-z_0-9$\u0080-\uffff]*")
_PARAM = re.compile(r"\$(\d+)")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z_0-9\u0080-\uffff]*)?\$")

READ_KEYWORDS = frozenset({"select", "values", "table", "show", "explain"})
WRITE_KEYWORDS = frozenset({"insert", "update", "delete", "merge", "copy", "truncate", "into",
                            "call", "do", "refresh", "lock"})
TRANSACTION_KEYWORDS = frozenset({"begin", "start", "commit", "end", "rollback", "abort",
                                  "savepoint", "release", "prepare"})


class SqlTextError(ValueError):
    """The statement cannot be sent as given (arguments do not match its placeholders, ...)."""


@dataclass(frozen=True)
class Statement:
    """The parts of a statement's text that matter to the adapter."""

    text: str
    placeholders: frozenset[int]  # the n of every $n
    words: tuple[str, ...]  # keywords and identifiers, lower case, in order
    statements: int  # top-level statements separated by ';'

    @property
    def first_word(self) -> str:
        return self.words[0] if self.words else ""

    @property
    def param_count(self) -> int:
        return max(self.placeholders, default=0)

    @property
    def is_transaction_control(self) -> bool:
        return self.first_word in TRANSACTION_KEYWORDS

    @property
    def returns_rows_on_write(self) -> bool:
        return "returning" in self.words

    @property
    def is_read_only(self) -> bool:
        """True when re-running the statement cannot change data (see the module docstring)."""
        first = self.first_word
        if self.statements != 1:
            return False
        if first == "explain":
            return "analyze" not in self.words[:4] and not WRITE_KEYWORDS & set(self.words)
        if first in READ_KEYWORDS or first == "with":
            # SELECT ... INTO creates a table; WITH may wrap INSERT/UPDATE/DELETE.
            return not WRITE_KEYWORDS & set(self.words)
        return False

    def check_args(self, nargs: int) -> None:
        """Raise SqlTextError unless exactly $1..$nargs are used (PostgreSQL needs every
        parameter to be referenced for it to infer a type, and rejects extra ones)."""
        expected = set(range(1, nargs + 1))
        if self.placeholders == expected:
            return
        missing = sorted(expected - self.placeholders)
        extra = sorted(self.placeholders - expected)
        parts = []
        if extra:
            parts.append("no argument for " + ", ".join(f"${n}" for n in extra))
        if missing:
            parts.append("placeholder missing for argument " + ", ".join(f"${n}" for n in missing))
        raise SqlTextError(f"{nargs} argument(s) given, query uses "
                           f"{self.param_count or 'no'} placeholder(s): {'; '.join(parts)}")


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Statement:
    """Scan `text` once, skipping literals, quoted identifiers and comments. Agents send the same
    few statements over and over: the result is cached per text."""
    placeholders: set[int] = set()
    words: list[str] = []
    statements = 0
    content_since_semicolon = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n\f":
            i += 1
            continue
        if c == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c == "/" and text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            continue
        if c == ";":
            if content_since_semicolon:
                statements += 1
            content_since_semicolon = False
            i += 1
            continue
        content_since_semicolon = True
        if c == "'":
            i = _skip_quoted(text, i, "'", backslash=False)
        elif c == '"':
            i = _skip_quoted(text, i, '"', backslash=False)
        elif c == "$":
            param = _PARAM.match(text, i)
            if param:
                placeholders.add(int(param.group(1)))
                i = param.end()
                continue
            tag = _DOLLAR_TAG.match(text, i)
            if tag:
                end = text.find(tag.group(0), tag.end())
                i = n if end < 0 else end + len(tag.group(0))
            else:
                i += 1
        elif _WORD_START.match(c):
            m = _WORD.match(text, i + 1)
            end = m.end() if m else i + 1
            word = text[i:end].lower()
            if word == "e" and end < n and text[end] == "'":
                # E'...': a string in which a backslash escapes the next character.
                i = _skip_quoted(text, end, "'", backslash=True)
                continue
            words.append(word)
            i = end
        else:
            i += 1
    if content_since_semicolon:
        statements += 1
    return Statement(text, frozenset(placeholders), tuple(words), statements)


def _skip_block_comment(text: str, i: int) -> int:
    depth = 0
    n = len(text)
    while i < n:
        if text.startswith("/*", i):
            depth += 1
            i += 2
        elif text.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _skip_quoted(text: str, i: int, quote: str, *, backslash: bool) -> int:
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if backslash and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and text[i + 1] == quote:  # doubled quote: an escaped quote
                i += 2
                continue
            return i + 1
        i += 1
    return n
