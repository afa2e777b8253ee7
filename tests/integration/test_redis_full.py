"""A Redis that is full (maxmemory with noeviction) under a running system: the worker that
cannot store a result survives it, its client hears a clear error, and new work goes through the
same worker once there is room again."""

from __future__ import annotations

import redis

from factorial_ws.constants import STORAGE_FULL
from support import UNIT_S, Launcher, client

from .fault_tools import SLOW_NUMBER, busy_child


async def test_a_worker_that_cannot_store_a_result_fails_the_task_and_keeps_consuming(
    launch: Launcher,
) -> None:
    server = launch.redis(persistent=False)
    worker = launch.worker(server.url, concurrency=1)
    _, url = launch.gateway(server.url)
    store = redis.Redis.from_url(server.url)
    async with client(url) as ws:
        slow = await ws.request({"type": "factorial", "number": SLOW_NUMBER})
        busy_child(worker.pid)  # computing: its 3.8 MB result will find Redis full
        queued = await ws.request({"type": "factorial", "number": 2000})  # taken from a full Redis
        store.config_set("maxmemory", store.info("memory")["used_memory"])
        failed = [await ws.recv(timeout_s=30 * UNIT_S) for _ in range(2)]
        assert failed == [
            {"type": "error", "task_id": task["task_id"], "result": STORAGE_FULL} for task in (slow, queued)
        ]
        store.config_set("maxmemory", 0)
        _, done = await ws.factorial(5, timeout_s=30 * UNIT_S)
        assert done["result"] == 120, done
    assert worker.alive(), worker.log()
    assert "Unrecoverable error" not in worker.log()
