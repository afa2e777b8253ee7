"""The workers' result backend charges each stored result's bytes to the client address its task
message names, in a bucket of the hash the gateways' submission script sums; a task sent by some
other Celery client (no address) is charged to nobody."""

from __future__ import annotations

import time

import redis
from celery.app.task import Context

from factorial_ws.config import Config
from factorial_ws.constants import CLIENT_HEADER, RESULT_KEY_PREFIX, STORED_BYTES_KEY_PREFIX
from factorial_ws.supervisor.redis_server import RedisServer
from factorial_ws.worker.app import create_app
from factorial_ws.worker.result_backend import stored_bucket_s


def test_a_stored_result_is_charged_to_the_address_its_message_names(redis_server: RedisServer) -> None:
    app = create_app(Config(redis_url=redis_server.url, result_expires_s=600))
    charged, uncharged = "2f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09", "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
    before_s = time.time()
    app.backend.store_result(charged, "9" * 5000, "SUCCESS", request=Context({CLIENT_HEADER: "127.0.0.2"}))
    app.backend.store_result(uncharged, "9" * 5000, "SUCCESS", request=Context({}))
    buckets = {str(int(moment_s // stored_bucket_s(600))).encode() for moment_s in (before_s, time.time())}
    with redis.Redis.from_url(redis_server.url) as sync:
        key = STORED_BYTES_KEY_PREFIX + "127.0.0.2"
        stored = len(RESULT_KEY_PREFIX + charged) + len(sync.get(RESULT_KEY_PREFIX + charged) or b"")
        [(bucket, size)] = sync.hgetall(key).items()  # one bucket: now's
        assert bucket in buckets and size == str(stored).encode()
        assert 600 < sync.ttl(key) <= 600 + stored_bucket_s(600)
        assert sync.keys(STORED_BYTES_KEY_PREFIX + "*") == [key.encode()]
