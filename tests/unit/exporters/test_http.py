"""Basic auth header check (pure)."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from exporters.http import check_basic_auth, gzip_accepted

DIGEST = bcrypt.hashpw(b"s3cret:with:colons", bcrypt.gensalt(4)).decode()


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_right_credentials() -> None:
    assert check_basic_auth(header("prom", "s3cret:with:colons"), "prom", DIGEST)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        header("prom", "wrong"),
        header("other", "s3cret:with:colons"),
        "Bearer abc",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ],
)
def test_refused(value: str | None) -> None:
    assert not check_basic_auth(value, "prom", DIGEST)


def test_a_hash_that_is_not_bcrypt_refuses_everything() -> None:
    assert not check_basic_auth(header("prom", "s3cret:with:colons"), "prom", "not-a-hash")


def test_gzip_accepted() -> None:
    assert gzip_accepted("gzip")
    assert gzip_accepted("deflate, GZIP;q=0.5")
    assert not gzip_accepted(None)
    assert not gzip_accepted("")
    assert not gzip_accepted("x-gzip-not, br")
