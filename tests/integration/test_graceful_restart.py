"""Workers restarted gracefully (SIGTERM, then SIGQUIT after a short grace, as `up` stops
them) while a long task runs: each restart hands the task back, and none counts as one of the
MAX_TASK_ATTEMPTS starts that only a worker's death should use up."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from typing import Any

import pytest
import redis

from factorial_ws.constants import ATTEMPTS_KEY_PREFIX, HANDED_BACK_KEY_PREFIX, RESULT_KEY_PREFIX
from peers import client
from support import UNIT_S, Launcher, Proc, wait_until

from .fault_tools import assert_success, busy_pool_process, kill, submit, wait_gone

pytestmark = pytest.mark.long  # 20 s or more: started first (conftest.py)

# 1.5 s of GMP on an idle 2-core machine (5-7 s on a loaded one): it outlasts each restart
# below, even one whose grace runs its full second, so every one interrupts it. (The next
# restart waits for a pool process to compute it again: one that did not would fail the test.)
LONG_NUMBER = 1_500_000
RESTARTS = 3
MAX_TASK_ATTEMPTS = 3
SETTINGS: dict[str, Any] = {
    "MAX_NUMBER": LONG_NUMBER + 1,
    "MAX_TASK_ATTEMPTS": MAX_TASK_ATTEMPTS,
    # How long the gateway waits for the result across the restarts: on a loaded machine the
    # three restarts took 143 s, so this wait stretches with every other timeout of the suite.
    "HARD_TASK_TIMEOUT": 120 * UNIT_S,
}


@pytest.fixture(scope="module")
def redis_url(module_launch: Launcher) -> str:
    return module_launch.redis().url


@pytest.fixture(scope="module")
def url(module_launch: Launcher, redis_url: str) -> str:
    """One gateway for both tests, in this process: they only speak the protocol to it. Shared
    safely: each computes a number of its own (no result reuse between them), has its own
    workers, and has its result before it ends (nothing of it is left queued or running)."""
    return module_launch.in_process_gateway(redis_url, **SETTINGS)


def hard_worker(launch: Launcher, redis_url: str, name: str, **settings: Any) -> Proc:
    return launch.worker(redis_url, queues="hard", concurrency=1, name=name, **{**SETTINGS, **settings})


def warm_shutdown(worker: Proc, redis_url: str, task_id: str) -> None:
    """SIGTERM (stop taking tasks, let the running one go on), then a grace of at most a second
    that ends as soon as the worker has marked the task it holds as handed back: the part of a
    warm shutdown that keeps the task's next start from counting as an attempt."""
    worker.signal(signal.SIGTERM)
    with redis.Redis.from_url(redis_url) as r, contextlib.suppress(TimeoutError):
        # Past the grace without the mark (a defect), the test goes on as a supervisor would;
        # the attempts it then counts fail it.
        wait_until(lambda: r.exists(HANDED_BACK_KEY_PREFIX + task_id), 1 * UNIT_S, "the mark", watch=[worker])


def restart_gracefully(worker: Proc, redis_url: str, task_id: str) -> None:
    """Warm shutdown, and after its grace a cold one (SIGQUIT: cancel the running task, hand it
    back to its queue)."""
    warm_shutdown(worker, redis_url, task_id)
    worker.signal(signal.SIGQUIT)
    # A pool process deep in GMP acts on the signal only when GMP returns: seconds on a busy machine.
    assert worker.process.wait(60 * UNIT_S) is not None


async def test_a_long_task_survives_three_graceful_worker_restarts_without_using_up_attempts(
    launch: Launcher, redis_url: str, url: str
) -> None:
    # The three restarts' replacements start beside the first worker, at once, rather than one
    # after each restart: the task handed back goes to one of those still running.
    starts = [functools.partial(hard_worker, launch, redis_url, f"w{n}") for n in range(RESTARTS + 1)]
    running = {worker.pid: worker for worker in launch.side_by_side(*starts)}
    async with client(url) as ws:
        task_id = await submit(ws, LONG_NUMBER)
        for _ in range(RESTARTS):
            # In threads, so that this client's event loop keeps answering the gateway's pings.
            worker_pid, _ = await asyncio.to_thread(busy_pool_process, list(running))  # it runs
            await asyncio.to_thread(restart_gracefully, running.pop(worker_pid), redis_url, task_id)
        reply = await ws.recv(timeout_s=120 * UNIT_S, keep_ints_as_text=True)
    assert_success(reply, task_id, LONG_NUMBER)
    with redis.Redis.from_url(redis_url) as r:
        assert int(r.get(ATTEMPTS_KEY_PREFIX + task_id) or 0) == 0  # no start was after a death


async def test_a_task_whose_worker_is_killed_after_its_warm_shutdown_grace_does_not_use_up_an_attempt(
    launch: Launcher, redis_url: str, url: str
) -> None:
    # What a supervisor that kills after its grace does: SIGTERM, then SIGKILL. The task waits in
    # Redis for the visibility timeout (short here), then runs on the next worker.
    # The workers' short visibility timeout needs a hard limit under half of it; the task itself
    # runs under the gateway's HARD_TASK_TIMEOUT of SETTINGS, which its message carries, and
    # takes a few seconds at most: well within the visibility timeout once it runs again.
    number = LONG_NUMBER + 1  # not the other test's: no result of it to reuse
    worker_settings: dict[str, Any] = {"HARD_TASK_TIMEOUT": 5, "VISIBILITY_TIMEOUT": 14}
    worker = hard_worker(launch, redis_url, "w0", **worker_settings)
    async with client(url) as ws:
        task_id = await submit(ws, number)
        # In threads, so that this client's event loop keeps answering the gateway's pings.
        _, pool_process = await asyncio.to_thread(busy_pool_process, [worker.pid])
        await asyncio.to_thread(warm_shutdown, worker, redis_url, task_id)
        kill(worker.pid)
        await asyncio.to_thread(wait_gone, [worker.pid, pool_process])
        with redis.Redis.from_url(redis_url) as r:
            assert not r.exists(RESULT_KEY_PREFIX + task_id)  # it was killed in the middle of the task
        await asyncio.to_thread(hard_worker, launch, redis_url, "w1", **worker_settings)
        reply = await ws.recv(timeout_s=120 * UNIT_S, keep_ints_as_text=True)
    assert_success(reply, task_id, number)
    with redis.Redis.from_url(redis_url) as r:
        assert int(r.get(ATTEMPTS_KEY_PREFIX + task_id) or 0) == 0
