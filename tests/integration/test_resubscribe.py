"""The result hub resubscribing many waiting tasks after its subscription drops, against a real
Redis, with the event loop watched by a probe: the reconnection must not freeze the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from factorial_ws.gateway.results import ResultHub
from factorial_ws.gateway.stored_tasks import result_key
from factorial_ws.gateway.tuning import tuned_collector
from factorial_ws.protocol import Success, new_task_id
from factorial_ws.supervisor.redis_server import RedisServer
from support import UNIT_S

# It times the system (latency, a stall, recovery): run alone, not beside other tests.
pytestmark = pytest.mark.alone

WAITING_TASKS = 10_000
STALL_LIMIT_S = 0.1  # the longest the loop may run without letting other work in
_PROBE_INTERVAL_S = 0.005


@dataclass
class LoopLag:
    """The longest the event loop went between two wake-ups of a probe that asks to run every
    few milliseconds: in wall time, and in CPU time of this thread. The CPU time is what the
    code held the loop for; the wall time also counts the machine's other processes (2 cores
    shared by other test runs), so the limit is checked on the CPU time."""

    wall_s: float = 0.0
    cpu_s: float = 0.0

    async def run(self) -> None:
        wall, cpu = time.monotonic(), time.thread_time()
        while True:
            await asyncio.sleep(_PROBE_INTERVAL_S)
            now_wall, now_cpu = time.monotonic(), time.thread_time()
            self.wall_s = max(self.wall_s, now_wall - wall - _PROBE_INTERVAL_S)
            self.cpu_s = max(self.cpu_s, now_cpu - cpu)
            wall, cpu = now_wall, now_cpu


@contextlib.asynccontextmanager
async def probed() -> AsyncIterator[LoopLag]:
    lag = LoopLag()
    probe = asyncio.create_task(lag.run())
    try:
        yield lag
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe


@contextlib.asynccontextmanager
async def hub_on(redis_url: str) -> AsyncIterator[ResultHub]:
    """A result hub wired as the gateway wires it: pooled commands, one pub/sub connection, and
    the garbage collector as the gateway runs it (else a full collection of this test process's
    heap, every earlier test's objects, may land in the probed window and be counted)."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub_client = aioredis.Redis.from_url(redis_url)
    hub = ResultHub(client, pubsub_client)
    with tuned_collector():
        await hub.start()
        try:
            assert await hub.wait_connected(10 * UNIT_S)
            yield hub
        finally:
            await hub.close()
            await client.aclose()
            await pubsub_client.aclose()


def _stored_success(digits: str) -> str:
    return json.dumps({"status": "SUCCESS", "result": digits, "task_id": None})


async def test_resubscribing_10000_waiting_tasks_never_holds_the_event_loop_100_ms(
    redis_server: RedisServer,
) -> None:
    async with hub_on(redis_server.url) as hub:
        watches = await asyncio.gather(*(hub.subscribe(new_task_id()) for _ in range(WAITING_TASKS)))
        admin = aioredis.Redis.from_url(redis_server.url)
        # Stored but not published: only the catch-up read after the reconnection can deliver it.
        # It is the last channel the hub subscribes to again, so its delivery ends the reconnection.
        last = watches[-1]
        await admin.set(result_key(last.task_id), _stored_success("120"))

        async with probed() as lag:
            killed = await admin.client_kill_filter(_type="pubsub")
            outcome = await asyncio.wait_for(last.outcome, 60 * UNIT_S)
        await admin.aclose()

        assert killed == 1
        assert outcome == Success("120")
        assert hub.connected and hub.waiting == WAITING_TASKS
        assert lag.cpu_s < STALL_LIMIT_S, f"the loop was held {lag.cpu_s:.3f} s (wall {lag.wall_s:.3f} s)"
        for watch in watches:
            await hub.release(watch)
