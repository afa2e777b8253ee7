"""Workers restarted gracefully (SIGTERM, then SIGQUIT after a short grace, as `up` stops
them) while a long task runs: each restart hands the task back, and none counts as one of the
MAX_TASK_ATTEMPTS starts that only a worker's death should use up."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import redis

from factorial_ws.constants import ATTEMPTS_KEY_PREFIX
from support import UNIT_S, Launcher, Proc, client

from .fault_tools import assert_success, busy_child, busy_pool_process, kill, submit, wait_gone

# 2.5-5 s of GMP on this 2-core machine: it outlasts each restart below, so every one interrupts it.
LONG_NUMBER = 2_000_000
RESTARTS = 3
MAX_TASK_ATTEMPTS = 3
SETTINGS: dict[str, Any] = {
    "MAX_NUMBER": LONG_NUMBER,
    "MAX_TASK_ATTEMPTS": MAX_TASK_ATTEMPTS,
    # How long the gateway waits for the result across the restarts: on a loaded machine the
    # three restarts took 143 s, so this wait stretches with every other timeout of the suite.
    "HARD_TASK_TIMEOUT": 120 * UNIT_S,
}


def hard_worker(launch: Launcher, redis_url: str, name: str) -> Proc:
    return launch.worker(redis_url, queues="hard", concurrency=1, name=name, **SETTINGS)


def restart_gracefully(worker: Proc) -> None:
    """Warm shutdown (SIGTERM: stop taking tasks, let the running one go on), and after a
    short grace a cold one (SIGQUIT: cancel the running task, hand it back to its queue)."""
    worker.signal(signal.SIGTERM)
    time.sleep(1 * UNIT_S)
    worker.signal(signal.SIGQUIT)
    # A pool process deep in GMP acts on the signal only when GMP returns: seconds on a busy machine.
    assert worker.process.wait(60 * UNIT_S) is not None


async def test_a_long_task_survives_three_graceful_worker_restarts_without_using_up_attempts(
    launch: Launcher,
) -> None:
    server = launch.redis()
    worker = hard_worker(launch, server.url, "w0")
    _, url = launch.gateway(server.url, **SETTINGS)
    async with client(url) as ws:
        task_id = await submit(ws, LONG_NUMBER)
        for restart in range(1, RESTARTS + 1):
            # In threads, so that this client's event loop keeps answering the gateway's pings.
            await asyncio.to_thread(busy_child, worker.pid)  # the task is running
            await asyncio.to_thread(restart_gracefully, worker)
            worker = await asyncio.to_thread(hard_worker, launch, server.url, f"w{restart}")
        reply = await ws.recv(timeout_s=120 * UNIT_S, keep_ints_as_text=True)
    assert_success(reply, task_id, LONG_NUMBER)
    with redis.Redis.from_url(server.url) as r:
        assert int(r.get(ATTEMPTS_KEY_PREFIX + task_id) or 0) == 0  # no start was after a death


async def test_a_task_whose_worker_is_killed_after_its_warm_shutdown_grace_does_not_use_up_an_attempt(
    launch: Launcher,
) -> None:
    # What a supervisor that kills after its grace does: SIGTERM, then SIGKILL. The task waits in
    # Redis for the visibility timeout (short here), then runs on the next worker.
    # The workers' short visibility timeout needs a hard limit under half of it; the task itself
    # runs under the gateway's HARD_TASK_TIMEOUT of SETTINGS, which its message carries.
    number = 1_500_000
    worker_settings: dict[str, Any] = {**SETTINGS, "HARD_TASK_TIMEOUT": 12, "VISIBILITY_TIMEOUT": 25}
    server = launch.redis()
    worker = launch.worker(server.url, queues="hard", concurrency=1, name="w0", **worker_settings)
    _, url = launch.gateway(server.url, **SETTINGS)
    async with client(url) as ws:
        task_id = await submit(ws, number)
        # In threads, so that this client's event loop keeps answering the gateway's pings.
        _, pool_process = await asyncio.to_thread(busy_pool_process, [worker.pid])
        worker.signal(signal.SIGTERM)
        await asyncio.sleep(1 * UNIT_S)
        kill(worker.pid)
        await asyncio.to_thread(wait_gone, [worker.pid, pool_process])
        await asyncio.to_thread(
            launch.worker, server.url, queues="hard", concurrency=1, name="w1", **worker_settings
        )
        reply = await ws.recv(timeout_s=120 * UNIT_S, keep_ints_as_text=True)
    assert_success(reply, task_id, number)
    with redis.Redis.from_url(server.url) as r:
        assert int(r.get(ATTEMPTS_KEY_PREFIX + task_id) or 0) == 0
