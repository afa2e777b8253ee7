"""One REDIS_URL, written as redis-py reads it, and translated for kombu and Celery's result
backend, which spell a Unix socket differently."""

from __future__ import annotations

from typing import Any

import pytest
from kombu.utils.url import url_to_parts
from redis.connection import UnixDomainSocketConnection

from factorial_ws.celeryapp import celery_redis_url, create_app
from factorial_ws.config import Config


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "redis://:pw@h:1/2", "rediss://h:6380/0?ssl_cert_reqs=required"]
)
def test_tcp_urls_are_passed_to_celery_as_they_are(url: str) -> None:
    assert celery_redis_url(url) == url


def test_a_unix_url_becomes_kombus_redis_socket_url_with_the_db_as_virtual_host() -> None:
    assert celery_redis_url("unix:///run/redis.sock?db=3") == "redis+socket:///run/redis.sock?virtual_host=3"
    assert celery_redis_url("unix:///run/redis.sock") == "redis+socket:///run/redis.sock"


def test_broker_and_result_backend_read_the_socket_path_password_and_db() -> None:
    app = create_app(Config(redis_url="unix://:s3cret@/run/redis.sock?db=3"))
    hostname = app.connection().hostname  # kombu hands "socket://…" to its transport
    assert hostname is not None
    broker = url_to_parts(hostname)
    assert (broker.scheme, broker.path, broker.password) == ("socket", "run/redis.sock", "s3cret")
    assert broker.query == {"virtual_host": "3"}
    redis_backend: Any = app.backend  # a RedisBackend, which celery-types does not describe
    backend = redis_backend.connparams
    assert backend["connection_class"] is UnixDomainSocketConnection
    assert (backend["path"], backend["password"], backend["db"]) == ("/run/redis.sock", "s3cret", 3)
