"""How the producer counts the tasks ahead of a task sent with progress, against a real Redis:
the queue's length plus this queue's entries in kombu's ``unacked`` hash (tasks workers took and
have not finished), in the same transaction as the push."""

from __future__ import annotations

import json

import redis
import redis.asyncio as aioredis
from celery import Celery
from kombu.utils.json import dumps

from factorial_ws.constants import KOMBU_UNACKED_KEY, PROGRESS_HEADER
from factorial_ws.gateway.messages import task_envelope
from factorial_ws.gateway.producer import Producer
from factorial_ws.protocol import new_task_id
from factorial_ws.supervisor.redis_server import RedisServer


def taken_by_a_worker(sync: redis.Redis, app: Celery, queue: str) -> None:
    """What kombu's Redis QoS writes when a worker takes a message (QoS.append)."""
    message = json.loads(task_envelope(app, new_task_id(), queue, 2000))
    tag = message["properties"]["delivery_tag"]
    sync.hset(KOMBU_UNACKED_KEY, tag, dumps([message, "", queue]))


async def test_ahead_counts_the_queue_and_the_tasks_workers_of_that_queue_hold(
    app: Celery, redis_server: RedisServer
) -> None:
    with redis.Redis.from_url(redis_server.url) as sync:
        for _ in range(2):
            sync.lpush("hard", task_envelope(app, new_task_id(), "hard", 2000))
        sync.lpush("soft", task_envelope(app, new_task_id(), "soft", 5))
        taken_by_a_worker(sync, app, "hard")
        taken_by_a_worker(sync, app, "soft")
        taken_by_a_worker(sync, app, "soft")
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        producer = Producer(app, client, result_expires_s=600)
        ahead = await producer.send(new_task_id(), "hard", 5000, progress=True)
        after = await producer.send(new_task_id(), "hard", 5001, progress=True)
        unasked = await producer.send(new_task_id(), "hard", 5002)
    finally:
        await client.aclose()

    assert (ahead, after, unasked) == (3, 4, None)


def test_only_a_task_sent_with_progress_carries_the_header(app: Celery) -> None:
    task_id = new_task_id()
    assert PROGRESS_HEADER not in json.loads(task_envelope(app, task_id, "hard", 5000))["headers"]
    assert (
        json.loads(task_envelope(app, task_id, "hard", 5000, progress=True))["headers"][PROGRESS_HEADER]
        is True
    )
