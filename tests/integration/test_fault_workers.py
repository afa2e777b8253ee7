"""Workers killed with SIGKILL in the middle of a task: the task runs again and the client gets its
result; a task that kills its worker on every attempt ends, after MAX_TASK_ATTEMPTS starts, with
an error the client can read."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from factorial_ws.constants import ATTEMPTS_KEY_PREFIX, WORKER_LOST
from factorial_ws.supervisor.redis_server import RedisServer
from peers import client
from support import UNIT_S, Launcher, System

from .fault_tools import (
    SLOW_NUMBER,
    assert_success,
    busy_child,
    busy_pool_process,
    kill,
    submit,
    wait_gone,
)

MAX_TASK_ATTEMPTS = 3


@pytest.fixture(scope="module")
def one_worker(module_launch: Launcher) -> System:
    """Redis, one worker with a single pool process (so its busy process is easy to find), and
    the gateway; each test computes SLOW_NUMBER afresh (RESULT_REUSE=0)."""
    return module_launch.system(worker_concurrency=1, MAX_TASK_ATTEMPTS=MAX_TASK_ATTEMPTS, RESULT_REUSE=0)


def attempts_recorded(redis_url: str, task_id: str) -> int:
    """How many times the task was started again after a lost worker (tasks.py counts them)."""
    with redis.Redis.from_url(redis_url) as r:
        return int(r.get(ATTEMPTS_KEY_PREFIX + task_id) or 0)


async def test_task_whose_pool_process_is_killed_runs_again_and_the_client_gets_its_success(
    one_worker: System,
) -> None:
    worker_pid = one_worker.workers[0].pid
    async with client(one_worker.url) as ws:
        task_id = await submit(ws, SLOW_NUMBER)
        kill(busy_child(worker_pid))
        reply = await ws.recv(timeout_s=60 * UNIT_S, keep_ints_as_text=True)
    assert_success(reply, task_id, SLOW_NUMBER)
    # The second start saw the redelivered flag (delivery_info reaches the task).
    assert attempts_recorded(one_worker.redis_url, task_id) == 1
    assert one_worker.workers[0].alive()


async def test_task_that_kills_its_worker_every_time_fails_with_a_clear_error_after_max_attempts(
    one_worker: System,
) -> None:
    worker_pid = one_worker.workers[0].pid
    killed: set[int] = set()
    async with client(one_worker.url) as ws:
        task_id = await submit(ws, SLOW_NUMBER)
        for _ in range(MAX_TASK_ATTEMPTS):
            pool_process = busy_child(worker_pid, exclude=killed)
            kill(pool_process)
            killed.add(pool_process)
        reply = await ws.recv(timeout_s=60 * UNIT_S, keep_ints_as_text=True)
    assert reply == {"type": "error", "result": WORKER_LOST, "task_id": task_id}
    assert attempts_recorded(one_worker.redis_url, task_id) == MAX_TASK_ATTEMPTS
    assert one_worker.workers[0].alive()


async def test_task_of_a_worker_killed_outright_is_redelivered_to_a_live_worker(
    launch: Launcher, redis_server: RedisServer
) -> None:
    # Workers: a short visibility timeout, so the task left unacknowledged by the dead worker is
    # restored within seconds; it must exceed twice their own time limit, but the task runs
    # under the gateway's 30 s, which its message carries. The gateway waits that long for the
    # result (its wait limit is its own HARD_TASK_TIMEOUT).
    worker_settings: dict[str, Any] = {"HARD_TASK_TIMEOUT": 3, "VISIBILITY_TIMEOUT": 7}
    gateway_settings: dict[str, Any] = {"HARD_TASK_TIMEOUT": 30, "VISIBILITY_TIMEOUT": 61}
    workers = [
        launch.worker(redis_server.url, queues="hard", concurrency=1, name=f"w{i}", **worker_settings)
        for i in range(2)
    ]
    _, url = launch.gateway(redis_server.url, **gateway_settings)
    async with client(url) as ws:
        task_id = await submit(ws, SLOW_NUMBER)
        victim_pid, pool_pid = busy_pool_process([w.pid for w in workers])
        kill(victim_pid)
        wait_gone([victim_pid, pool_pid])  # its pool process dies with it (PDEATHSIG)
        reply = await ws.recv(timeout_s=40 * UNIT_S, keep_ints_as_text=True)
    assert_success(reply, task_id, SLOW_NUMBER)
    assert attempts_recorded(redis_server.url, task_id) == 1
