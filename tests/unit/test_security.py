"""Security defaults and the pure pieces of the handshake checks: task ids, bind address,
tokens, origins, Redis URLs with secrets and TLS."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Request

from factorial_ws.celeryapp import celery_settings
from factorial_ws.config import Config
from factorial_ws.gateway.routes import token_matches, token_of
from factorial_ws.gateway.server import _origins, _safe
from factorial_ws.protocol import is_task_id, new_task_id
from factorial_ws.supervisor.redis_server import RedisServer


def _request(path: str = "/", **headers: str) -> Request:
    return Request(path, Headers(list(headers.items())))


# --- task ids -------------------------------------------------------------------------------


def test_task_ids_are_random_version_4_uuids() -> None:
    ids = [new_task_id() for _ in range(1000)]
    for task_id in ids:
        parsed = uuid.UUID(task_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert is_task_id(task_id)
    assert len(set(ids)) == len(ids)


# --- who may connect ------------------------------------------------------------------------


def test_gateway_binds_to_localhost_unless_told_otherwise() -> None:
    assert Config().ws_host == "localhost"
    assert Config.from_env({}).ws_host == "localhost"
    assert Config.from_env({"WS_HOST": "0.0.0.0"}).ws_host == "0.0.0.0"


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


def test_origin_allow_list_admits_listed_origins_and_non_browsers() -> None:
    config = Config.from_env({"WS_ALLOWED_ORIGINS": "https://a.example, https://b.example"})
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert _origins(config) == ["https://a.example", "https://b.example", None]


def test_no_origin_list_means_no_origin_check() -> None:
    assert _origins(Config()) is None


# --- Redis URLs -----------------------------------------------------------------------------


def test_redis_password_never_reaches_the_log_line() -> None:
    assert _safe("redis://:p4ss@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"
    assert "p4ss" not in _safe("rediss://user:p4ss@redis.example:6380/1")


def test_private_redis_with_a_password_requires_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, port=6390, password="p@ss/w:rd")
    command = server.command()
    assert command[command.index("--requirepass") + 1] == "p@ss/w:rd"
    assert server.url == "redis://:p%40ss%2Fw%3Ard@127.0.0.1:6390/0"


def test_plain_redis_url_has_no_tls_settings() -> None:
    settings = celery_settings(Config(redis_url="redis://:pw@127.0.0.1:6379/0"))
    assert "broker_use_ssl" not in settings and "redis_backend_use_ssl" not in settings


def test_rediss_url_without_options_verifies_the_server_certificate() -> None:
    # Left alone, kombu would connect without checking the certificate (with a warning),
    # and Celery's result backend would refuse to start.
    settings = celery_settings(Config(redis_url="rediss://:pw@redis.example:6380/0"))
    assert settings["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert settings["redis_backend_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def test_rediss_url_with_its_own_tls_options_is_left_to_them() -> None:
    url = "rediss://redis.example:6380/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fetc%2Fca.pem"
    settings = celery_settings(Config(redis_url=url))
    assert "broker_use_ssl" not in settings and "redis_backend_use_ssl" not in settings
