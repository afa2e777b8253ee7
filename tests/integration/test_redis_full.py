"""A Redis that is full (maxmemory with noeviction) under a running system: the worker that
cannot store a result survives it, its client hears a clear error, and new work goes through the
same worker once there is room again."""

from __future__ import annotations

import json
import urllib.error
from typing import Any

import pytest
import redis

from factorial_ws.constants import STORAGE_FULL, STORAGE_NEARLY_FULL
from factorial_ws.supervisor.redis_server import RedisServer
from peers import client
from support import UNIT_S, Launcher, Proc, wait_until

from .fault_tools import SLOW_NUMBER, busy_child, http_get

Shared = tuple[RedisServer, Proc]  # Redis, its one worker
CLIENT_BUFFERS_IDLE_BYTES = 1024 * 1024  # measured: about 0.2 MB with the worker and a gateway


@pytest.fixture(scope="module")
def redis_and_worker(module_launch: Launcher) -> Shared:
    """One Redis and one worker with a single pool process for the module; each test runs its
    own in-process gateway (its own high water). Safe to share: each test starts with no
    memory limit and ends with none, and asks for numbers the other does not, so no result of
    one (stored, or failed for want of room) is reused by the other."""
    server = module_launch.redis(persistent=False)
    return server, module_launch.worker(server.url, concurrency=1)


async def test_a_worker_that_cannot_store_a_result_fails_the_task_and_keeps_consuming(
    launch: Launcher, redis_and_worker: Shared
) -> None:
    server, worker = redis_and_worker
    url = launch.in_process_gateway(server.url)
    store = redis.Redis.from_url(server.url)
    store.config_set("maxmemory", 0)
    async with client(url) as ws:
        slow = await ws.request({"type": "factorial", "number": SLOW_NUMBER})
        busy_child(worker.pid)  # computing: its 3.8 MB result will find Redis full
        queued = await ws.request({"type": "factorial", "number": 2000})  # taken from a full Redis
        # Full, with a margin: what Redis frees meanwhile (the failed task's record, buffers)
        # must not make room for the small result.
        store.config_set("maxmemory", store.info("memory")["used_memory"] - 256 * 1024)
        failed = [await ws.recv(timeout_s=30 * UNIT_S) for _ in range(2)]
        assert failed == [
            {"type": "error", "task_id": task["task_id"], "result": STORAGE_FULL} for task in (slow, queued)
        ]
        store.config_set("maxmemory", 0)
        _, done = await ws.factorial(5, timeout_s=30 * UNIT_S)
        assert done["result"] == 120, done
    assert worker.alive(), worker.log()
    assert "Unrecoverable error" not in worker.log()


async def test_past_the_high_water_new_large_tasks_are_refused_and_stored_ones_small_ones_lookups_served(
    launch: Launcher, redis_and_worker: Shared
) -> None:
    server, _ = redis_and_worker
    url = launch.in_process_gateway(server.url, REDIS_MEMORY_HIGH_WATER=0.8)
    store = redis.Redis.from_url(server.url)
    store.config_set("maxmemory", 0)
    async with client(url) as ws:
        stored, _ = await ws.factorial(2100)
        store.config_set("maxmemory", int(_settled_used_memory(store) / 0.9))  # 90% full
        wait_until(lambda: _memory_problems(url), 10 * UNIT_S, what="the memory problem in /healthz")
        memory = _health(url)["memory"]
        assert memory["max_bytes"] > 0 and 0.8 <= memory["ratio"] < 1, memory

        refused = await ws.request({"type": "factorial", "number": 3100, "id": 1})
        assert refused == {"type": "error", "result": STORAGE_NEARLY_FULL, "id": 1}
        # A large number already stored costs no new storage: served, by the task that stored it.
        again = await ws.request({"type": "factorial", "number": 2100, "id": 2})
        assert again == {"type": "result", "task_id": stored["task_id"], "id": 2}, again
        reused = await ws.recv()
        assert reused["type"] == "success" and reused["id"] == 2, str(reused)[:200]
        _, small = await ws.factorial(5)
        assert small["result"] == 120, small
        looked_up = await ws.request({"type": "result", "task_id": stored["task_id"]})
        assert looked_up["type"] == "success", str(looked_up)[:200]

        store.config_set("maxmemory", 0)  # no limit: nothing is refused
        wait_until(lambda: not _memory_problems(url), 10 * UNIT_S, what="the memory problem gone")
        assert _health(url)["memory"]["ratio"] is None
        _, large = await ws.factorial(3100)
        assert large["type"] == "success", str(large)[:200]


def _settled_used_memory(store: redis.Redis) -> int:
    """Redis' used memory once its clients' input buffers are back to their idle size: a write
    Redis refused (the other test's 3.8 MB result) stays in its client's buffer until Redis'
    cron shrinks it, a second or two later. Measured before, "90% full" soon reads as 30%."""
    wait_until(
        lambda: store.info("memory")["mem_clients_normal"] < CLIENT_BUFFERS_IDLE_BYTES,
        10 * UNIT_S,
        what="Redis' client buffers back to their idle size",
    )
    return int(store.info("memory")["used_memory"])


def _health(url: str) -> dict[str, Any]:
    try:
        return json.loads(http_get(url, "/healthz"))  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:  # 503 while something is wrong, with the report
        return json.loads(error.read())  # type: ignore[no-any-return]


def _memory_problems(url: str) -> list[str]:
    return [problem for problem in _health(url)["problems"] if "memory" in problem]
