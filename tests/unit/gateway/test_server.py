"""The gateway's pure choices: where it binds, which origins it admits, how it logs a Redis URL."""

from __future__ import annotations

from factorial_ws.config import Config
from factorial_ws.gateway.server import _origins, _safe


def test_gateway_binds_to_localhost_unless_told_otherwise() -> None:
    assert Config().ws_host == "localhost"
    assert Config.from_env({}).ws_host == "localhost"
    assert Config.from_env({"WS_HOST": "0.0.0.0"}).ws_host == "0.0.0.0"


def test_origin_allow_list_admits_listed_origins_and_non_browsers() -> None:
    config = Config.from_env({"WS_ALLOWED_ORIGINS": "https://a.example, https://b.example"})
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert _origins(config) == ["https://a.example", "https://b.example", None]


def test_no_origin_list_means_no_origin_check() -> None:
    assert _origins(Config()) is None


def test_redis_password_never_reaches_the_log_line() -> None:
    assert _safe("redis://:p4ss@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"
    assert "p4ss" not in _safe("rediss://user:p4ss@redis.example:6380/1")
