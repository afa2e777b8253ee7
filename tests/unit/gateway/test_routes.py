"""The handshake's token check: where a client puts its token, and how it is compared."""

from __future__ import annotations

from websockets.datastructures import Headers
from websockets.http11 import Request

from factorial_ws.config import Config
from factorial_ws.gateway.routes import token_matches, token_of


def _request(path: str = "/", **headers: str) -> Request:
    return Request(path, Headers(list(headers.items())))


def test_without_a_token_setting_anyone_may_connect() -> None:
    assert Config.from_env({}).token is None
    assert token_matches(None, None)
    assert token_matches(None, "anything")


def test_token_is_read_from_the_bearer_header() -> None:
    assert token_of(_request(Authorization="Bearer s3cret")) == "s3cret"
    assert token_of(_request(Authorization="bearer  s3cret ")) == "s3cret"


def test_token_is_read_from_the_query_for_browsers() -> None:
    assert token_of(_request("/?token=s3cret")) == "s3cret"
    assert token_of(_request("/ws?x=1&token=a%2Bb")) == "a+b"


def test_no_token_given_is_none() -> None:
    assert token_of(_request()) is None
    assert token_of(_request(Authorization="Basic dXNlcjpwYXNz")) is None


def test_token_must_match_exactly() -> None:
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cret", None)
    assert not token_matches("s3cret", "")
    assert not token_matches("s3cret", "s3cre")
    assert not token_matches("s3cret", "s3cretX")
    assert not token_matches("s3cret", "S3CRET")
