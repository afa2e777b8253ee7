"""The storage guard's reading of a real Redis: its used memory against its maxmemory, with no
limit (maxmemory 0) and with INFO forbidden, where it must never refuse; and the submission
script's use of it, past the high water: a new large task is refused, the task of the same work
(stored, or still computing) is served, since it costs no new storage."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import redis.asyncio as aioredis
from celery import Celery
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from factorial_ws.catalog.factorial import FACTORIAL, factorial_catalog
from factorial_ws.config import Config
from factorial_ws.constants import HARD_QUEUE, RESULT_KEY_PREFIX, SOFT_QUEUE, STORAGE_NEARLY_FULL
from factorial_ws.gateway.memory import MemoryGauge, MemoryReading
from factorial_ws.gateway.producer import Accepted, Call, Producer, Refused, Rules
from factorial_ws.protocol import new_task_id
from factorial_ws.supervisor.probes import free_port
from factorial_ws.supervisor.redis_server import RedisServer

HOST = "127.0.0.2"


async def fill_to_90_percent(client: aioredis.Redis, gauge: MemoryGauge) -> int:
    """Set Redis' maxmemory so that its used memory is 90 % of it, and read it; that maxmemory."""
    used_bytes = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory", int(used_bytes / 0.9))
    await gauge.poll()
    return int(used_bytes / 0.9)


async def store_success(client: aioredis.Redis, task_id: str) -> None:
    """What a worker stores for a task that succeeded (the script reads only its status)."""
    await client.set(RESULT_KEY_PREFIX + task_id, json.dumps({"status": "SUCCESS", "result": 1}))


PAST_THE_HIGH_WATER = MemoryReading(used_bytes=95, max_bytes=100)


async def test_past_the_high_water_only_large_tasks_are_refused(client: aioredis.Redis) -> None:
    gauge = MemoryGauge(client, 0.8)
    max_bytes = await fill_to_90_percent(client, gauge)
    assert gauge.refuses(HARD_QUEUE) and not gauge.refuses(SOFT_QUEUE)
    assert (gauge.problem() or "").startswith("Redis memory at 9")
    report = gauge.report()
    assert report["max_bytes"] == max_bytes and 0.8 <= report["ratio"] < 1, report


async def test_without_a_memory_limit_nothing_is_refused(client: aioredis.Redis) -> None:
    await client.config_set("maxmemory", 0)
    gauge = MemoryGauge(client, 0.01)
    await gauge.poll()
    assert gauge.reading is not None and gauge.reading.used_bytes > 0
    assert gauge.report()["ratio"] is None
    assert not gauge.refuses(HARD_QUEUE) and gauge.problem() is None


async def test_a_redis_that_forbids_info_turns_the_guard_off(
    client: aioredis.Redis, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    await client.config_set("maxmemory", 1)  # over full: a reading would refuse
    await client.acl_setuser(
        "guard", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-info"]
    )
    url = redis_server.url.replace("redis://", "redis://guard:pw@")
    async with aioredis.Redis.from_url(url) as limited:
        gauge = MemoryGauge(limited, 0.8)
        gauge.reading = PAST_THE_HIGH_WATER  # read before INFO was forbidden
        await gauge.poll()
        await gauge.poll()
    await client.config_set("maxmemory", 0)
    assert gauge.reading is None and not gauge.refuses(HARD_QUEUE)
    warnings = [record for record in caplog.records if "the storage guard is off" in record.getMessage()]
    assert len(warnings) == 1, caplog.text  # said once, however many polls fail


async def test_a_redis_away_turns_the_guard_off() -> None:
    # No retries: redis-py's default retries a refused connection with backoff for seconds.
    async with aioredis.Redis(
        port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    ) as away:
        gauge = MemoryGauge(away, 0.8)
        gauge.reading = PAST_THE_HIGH_WATER  # read before Redis went away
        assert gauge.refuses(HARD_QUEUE)
        await gauge.poll()
    # Its requests get "Service unavailable" anyway; a stale reading must not outlive the outage.
    assert gauge.reading is None and not gauge.refuses(HARD_QUEUE) and gauge.problem() is None


async def test_past_the_high_water_a_large_number_stored_or_computing_is_served_and_a_new_one_refused(
    app: Celery, client: aioredis.Redis
) -> None:
    gauge = MemoryGauge(client, 0.8)
    producer = Producer(app, client, 600, rules=Rules(reuse=True), memory=gauge)
    stored = await producer.submit(new_task_id(), HARD_QUEUE, 2000, HOST)
    computing = await producer.submit(new_task_id(), HARD_QUEUE, 2500, HOST)
    assert isinstance(stored, Accepted) and isinstance(computing, Accepted)
    await store_success(client, stored.task_id)
    await fill_to_90_percent(client, gauge)

    answers = [await producer.submit(new_task_id(), HARD_QUEUE, n, "127.0.0.3") for n in (2000, 2500, 3000)]
    assert answers == [
        Accepted(stored.task_id, "done"),
        Accepted(computing.task_id, "pending"),
        Refused(STORAGE_NEARLY_FULL),
    ]
    small = await producer.submit(new_task_id(), SOFT_QUEUE, 5, HOST)
    assert isinstance(small, Accepted) and small.state == "created", small
    assert await client.llen(HARD_QUEUE) == 2  # nothing queued for the refused number


async def test_past_the_high_water_a_catalog_call_is_served_only_by_a_task_it_shares(
    app: Celery, client: aioredis.Redis
) -> None:
    entry = factorial_catalog(Config()).get(FACTORIAL)
    assert entry is not None and entry.share_results

    def call(number: int) -> Call:
        return Call.of(entry, entry.validate({"number": number}))

    gauge = MemoryGauge(client, 0.8)
    producer = Producer(app, client, 600, rules=Rules(reuse=True), memory=gauge)
    stored = await producer.submit_call(new_task_id(), call(2000), HOST)
    assert isinstance(stored, Accepted) and call(2000).queue == HARD_QUEUE
    await store_success(client, stored.task_id)
    await fill_to_90_percent(client, gauge)

    shared = await producer.submit_call(new_task_id(), call(2000), HOST)
    assert shared == Accepted(stored.task_id, "done")
    new = await producer.submit_call(new_task_id(), call(3000), HOST)
    unshared = await producer.submit_call(new_task_id(), replace(call(2000), share_key=None), HOST)
    assert new == unshared == Refused(STORAGE_NEARLY_FULL)
