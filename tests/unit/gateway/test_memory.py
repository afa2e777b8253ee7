"""The storage guard's reading of a real Redis: its used memory against its maxmemory, with no
limit (maxmemory 0) and with INFO forbidden, where it must never refuse."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from factorial_ws.constants import HARD_QUEUE, SOFT_QUEUE
from factorial_ws.gateway.memory import MemoryGauge
from factorial_ws.supervisor.redis_server import RedisServer


async def test_past_the_high_water_only_large_tasks_are_refused(client: aioredis.Redis) -> None:
    gauge = MemoryGauge(client, 0.8)
    used_bytes = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory", int(used_bytes / 0.9))
    await gauge.poll()
    assert gauge.refuses(HARD_QUEUE) and not gauge.refuses(SOFT_QUEUE)
    assert (gauge.problem() or "").startswith("Redis memory at 9")
    report = gauge.report()
    assert report["max_bytes"] == int(used_bytes / 0.9) and 0.8 <= report["ratio"] < 1, report


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
        await gauge.poll()
        await gauge.poll()
    await client.config_set("maxmemory", 0)
    assert gauge.reading is None and not gauge.refuses(HARD_QUEUE)
    warnings = [record for record in caplog.records if "the storage guard is off" in record.getMessage()]
    assert len(warnings) == 1, caplog.text  # said once, however many polls fail
