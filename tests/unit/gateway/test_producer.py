"""The task message the gateway pushes is the one kombu's Redis transport and Celery read."""

from __future__ import annotations

import base64
import json
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis
from celery import Celery
from kombu import Connection
from kombu.transport.virtual import Channel, Message

from factorial_ws.config import Config
from factorial_ws.constants import HARD_TASK_NAME, SOFT_TASK_NAME, SUBMITTED_KEY_PREFIX
from factorial_ws.gateway.messages import task_envelope
from factorial_ws.gateway.producer import Producer
from factorial_ws.supervisor.redis_server import RedisServer
from factorial_ws.worker.app import create_app

TASK_ID = "2f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09"


def envelope(app: Celery, queue: str, number: int) -> dict[str, Any]:
    payload = json.loads(task_envelope(app, TASK_ID, queue, number))
    assert isinstance(payload, dict)
    return payload


@pytest.mark.parametrize(
    ("queue", "number", "task_name"), [("soft", 5, SOFT_TASK_NAME), ("hard", 5000, HARD_TASK_NAME)]
)
def test_headers_name_the_task_its_id_and_arguments(
    app: Celery, queue: str, number: int, task_name: str
) -> None:
    headers = envelope(app, queue, number)["headers"]
    assert headers["task"] == task_name
    assert headers["id"] == headers["root_id"] == TASK_ID
    assert headers["argsrepr"] == f"({number},)"
    assert headers["lang"] == "py"


def test_body_is_base64_json_of_args_kwargs_and_embed(app: Celery) -> None:
    payload = envelope(app, "hard", 5000)
    assert payload["properties"]["body_encoding"] == "base64"
    assert payload["content-type"] == "application/json"
    args, kwargs, embed = json.loads(base64.b64decode(payload["body"]))
    assert (args, kwargs) == ([5000], {})
    assert embed["callbacks"] is None and embed["chain"] is None


@pytest.mark.parametrize("queue", ["soft", "hard"])
def test_delivery_info_routes_to_the_queue_by_name(app: Celery, queue: str) -> None:
    properties = envelope(app, queue, 1)["properties"]
    assert properties["delivery_info"] == {"exchange": "", "routing_key": queue}
    assert properties["correlation_id"] == TASK_ID
    assert properties["delivery_mode"] == 2  # persistent


def test_each_message_has_its_own_delivery_tag(app: Celery) -> None:
    tags = {envelope(app, "soft", 1)["properties"]["delivery_tag"] for _ in range(10)}
    assert len(tags) == 10


def test_kombus_virtual_transport_decodes_the_envelope(app: Celery) -> None:
    # The Redis transport's channel is a kombu virtual channel: it builds this same Message.
    with Connection("memory://") as connection:
        message = Message(envelope(app, "hard", 1234), channel=cast(Channel, connection.channel()))
        assert message.decode()[0] == [1234]
        assert message.headers["task"] == HARD_TASK_NAME
        assert message.delivery_info["routing_key"] == "hard"
        assert message.content_type == "application/json"


async def send(app: Celery, redis_url: str, queue: str, number: int) -> None:
    """One send of the producer, on a connection of its own."""
    async with aioredis.Redis.from_url(redis_url) as client:
        await Producer(app, client, result_expires_s=600).send(TASK_ID, queue, number)


async def test_send_pushes_the_task_and_marks_its_id_known(app: Celery, redis_server: RedisServer) -> None:
    await send(app, redis_server.url, "hard", 5000)
    with redis.Redis.from_url(redis_server.url) as sync:
        queued = sync.lrange("hard", 0, -1)
        assert len(queued) == 1 and json.loads(queued[0])["headers"]["id"] == TASK_ID
        assert sync.llen("soft") == 0
        key = SUBMITTED_KEY_PREFIX + TASK_ID
        assert json.loads(sync.get(key) or b"") == {"queue": "hard", "number": 5000}
        assert 590 < sync.ttl(key) <= 600


async def test_sending_an_id_again_pushes_nothing_so_a_retried_send_is_safe(
    app: Celery, redis_server: RedisServer
) -> None:
    async with aioredis.Redis.from_url(redis_server.url) as client:
        producer = Producer(app, client, result_expires_s=600)
        await producer.send(TASK_ID, "soft", 5)
        await producer.send(TASK_ID, "soft", 5)  # as when the first reply was lost and retried
    with redis.Redis.from_url(redis_server.url) as sync:
        assert sync.llen("soft") == 1
        assert json.loads(sync.get(SUBMITTED_KEY_PREFIX + TASK_ID) or b"") == {"queue": "soft", "number": 5}


# --- time limits in the message ------------------------------------------------------------


@pytest.mark.parametrize(("queue", "number", "time_limit_s"), [("soft", 5, 3.5), ("hard", 5000, 7.0)])
def test_the_envelope_carries_its_tasks_time_limit(queue: str, number: int, time_limit_s: float) -> None:
    app = create_app(Config(soft_task_timeout_s=3.5, hard_task_timeout_s=7.0))
    headers = json.loads(task_envelope(app, TASK_ID, queue, number))["headers"]
    # [hard, soft], as apply_async sends them: the task's own time_limit, and no soft limit (GMP
    # runs in C, where a soft limit's exception would never be raised).
    assert headers["timelimit"] == [time_limit_s, None]
