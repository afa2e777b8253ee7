"""A gateway with 1000 tasks waiting costs no CPU while it waits: results are pushed, not polled."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import pytest
import redis

from factorial_ws.constants import NOTE_CHANNEL_PREFIX
from factorial_ws.supervisor.probes import cpu_seconds
from factorial_ws.supervisor.redis_server import RedisServer
from peers import Client, client
from support import UNIT_S, Launcher, wait_until

# It times the system (latency, a stall, recovery): run alone, not beside other tests.
pytestmark = pytest.mark.alone

WAITING_TASKS = 1000
CONNECTIONS = 5
IDLE_WINDOW_S = 3.0
IDLE_CPU_LIMIT_S = 0.15  # near zero, with a margin for a machine shared with other tests


def number_for(index: int) -> int:
    return index % 1200  # both queues


async def submit(ws: Client, indexes: range) -> dict[str, int]:
    """Send every request before reading; returns task id -> index, from the acks."""
    for index in indexes:
        await ws.send({"type": "factorial", "number": number_for(index), "id": index})
    acks = [await ws.recv() for _ in indexes]
    assert all(ack["type"] == "result" for ack in acks), acks
    return {ack["task_id"]: ack["id"] for ack in acks}


async def results(ws: Client, count: int) -> dict[str, int]:
    replies = [await ws.recv(timeout_s=60 * UNIT_S) for _ in range(count)]
    assert all(reply["type"] == "success" for reply in replies)
    return {reply["task_id"]: reply["result"] for reply in replies}


async def test_gateway_with_1000_waiting_tasks_uses_no_cpu_then_delivers_all(
    launch: Launcher, redis_server: RedisServer
) -> None:
    # No worker yet: every task waits, well within the gateway's wait limit.
    gateway, url = launch.gateway(redis_server.url, HARD_TASK_TIMEOUT=120)
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    launch.callback(store.close)
    async with contextlib.AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(client(url)) for _ in range(CONNECTIONS)]
        per_connection = WAITING_TASKS // CONNECTIONS
        batches = [range(i * per_connection, (i + 1) * per_connection) for i in range(CONNECTIONS)]
        task_ids = await asyncio.gather(
            *(submit(ws, batch) for ws, batch in zip(connections, batches, strict=True))
        )
        assert sum(len(ids) for ids in task_ids) == WAITING_TASKS

        before = cpu_seconds(gateway.pid)
        await asyncio.sleep(IDLE_WINDOW_S)
        used_s = cpu_seconds(gateway.pid) - before
        print(f"gateway CPU over {IDLE_WINDOW_S:.0f} s, {WAITING_TASKS} tasks waiting: {used_s:.3f} s")
        assert used_s < IDLE_CPU_LIMIT_S

        # One pub/sub connection of the gateway holds a channel per waiting task.
        subscribers = [c for c in store.client_list() if int(c["sub"]) > 0]
        assert len(subscribers) == 1
        assert len(store.pubsub_channels(NOTE_CHANNEL_PREFIX + "*")) == WAITING_TASKS

        started = time.monotonic()
        launch.worker(redis_server.url, concurrency=2)
        delivered = await asyncio.gather(
            *(results(ws, len(ids)) for ws, ids in zip(connections, task_ids, strict=True))
        )
        print(f"{WAITING_TASKS} results {time.monotonic() - started:.1f} s after the worker start")
        # Each channel is released once its result is delivered, not when the client leaves.
        wait_until(
            lambda: not store.pubsub_channels(NOTE_CHANNEL_PREFIX + "*"), 10 * UNIT_S, what="unsubscribed"
        )
    for ids, got in zip(task_ids, delivered, strict=True):
        assert got.keys() == ids.keys()
        for task_id, index in ids.items():
            assert got[task_id] == math.factorial(number_for(index))
