"""Both timeouts of the seed: the gateway's wait limit, and a task killed by its time limit."""

from __future__ import annotations

import json
import math
import time

import pytest
import redis

from factorial_ws.constants import RESULT_KEY_PREFIX, WORKERS_KEY_PREFIX
from factorial_ws.supervisor.redis_server import RedisServer
from peers import client
from support import UNIT_S, Launcher, Proc, wait_until

from .fault_tools import assert_success, result_by_id, submit

GATEWAY_WAIT_S = 1
# A hard worker's own time limit and largest number: the gateway's shorter limit, carried in
# the task message, must win over its own.
WORKER_HARD_TASK_TIMEOUT_S = 30
MAX_NUMBER = 100_000_000


# Safe to share: every task of one test is finished (or killed) and acknowledged before the
# test ends, each test runs its own in-process gateway (its own limits), and the numbers differ
# (5000, 5 / 10_000_000, 1001, 7), so no result of one is reused by the other; the hard worker's
# log is only searched for ids of the test's own tasks.
@pytest.fixture(scope="module")
def soft_worker(module_launch: Launcher, module_redis: RedisServer) -> Proc:
    """A worker of the soft queue only."""
    return module_launch.worker(module_redis.url, queues="soft", name="soft")


@pytest.fixture(scope="module")
def hard_worker(module_launch: Launcher, module_redis: RedisServer) -> Proc:
    """A worker of the hard queue with one pool process; the first test starts it in its body
    (through ``request``), only once its task has timed out waiting for one."""
    return module_launch.worker(
        module_redis.url,
        queues="hard",
        name="hard",
        concurrency=1,
        HARD_TASK_TIMEOUT=WORKER_HARD_TASK_TIMEOUT_S,
        MAX_NUMBER=MAX_NUMBER,
    )


async def test_gateway_sends_timeout_error_when_no_worker_answers_and_the_task_is_kept(
    launch: Launcher, module_redis: RedisServer, soft_worker: Proc, request: pytest.FixtureRequest
) -> None:
    redis_server = module_redis
    with redis.Redis.from_url(redis_server.url) as store:  # the file's order: no hard worker yet
        assert store.zcard(WORKERS_KEY_PREFIX + "hard") == 0, "the hard worker started too early"
    url = launch.in_process_gateway(redis_server.url, HARD_TASK_TIMEOUT=GATEWAY_WAIT_S)
    async with client(url) as ws:
        ack = await ws.request({"type": "factorial", "number": 5000, "id": "t"})
        started = time.monotonic()
        timeout = await ws.recv(timeout_s=20 * UNIT_S)
        waited_s = time.monotonic() - started
        assert timeout == {
            "type": "error",
            "result": "Timeout error",
            "task_id": ack["task_id"],
            "id": "t",
        }
        assert GATEWAY_WAIT_S - 0.5 <= waited_s < GATEWAY_WAIT_S + 8 * UNIT_S
        await ws.factorial(5)  # the connection goes on

        # The task was not dropped: once a worker for its queue appears, it can be fetched.
        request.getfixturevalue("hard_worker")
        with redis.Redis.from_url(redis_server.url) as store:
            result_key = RESULT_KEY_PREFIX + ack["task_id"]
            wait_until(lambda: store.exists(result_key), 30 * UNIT_S, what="hard result")
        reply = await ws.request({"type": "result", "task_id": ack["task_id"]})
        assert reply == {"type": "success", "task_id": ack["task_id"], "result": math.factorial(5000)}


async def test_task_over_its_time_limit_is_killed_reported_as_timeout_and_not_redelivered(
    launch: Launcher, module_redis: RedisServer, soft_worker: Proc, hard_worker: Proc
) -> None:
    # The gateway's 1 s limit travels in the task message and wins over the worker's own 30 s
    # (as with apply_async): the worker kills the task after 1 s, which the stored
    # TimeLimitExceeded below proves (the gateway also stops waiting after 1 s).
    redis_server, worker = module_redis, hard_worker
    url = launch.in_process_gateway(redis_server.url, HARD_TASK_TIMEOUT=GATEWAY_WAIT_S, MAX_NUMBER=MAX_NUMBER)
    async with client(url) as ws:
        ack = await ws.request({"type": "factorial", "number": 10_000_000})  # > 10 s in GMP
        started = time.monotonic()
        reply = await ws.recv(timeout_s=25 * UNIT_S)
        assert reply == {"type": "error", "result": "Timeout error", "task_id": ack["task_id"]}
        assert time.monotonic() - started < 20 * UNIT_S

        # The failure is stored as Celery's time-limit error, and the task is acknowledged:
        # nothing left for the Redis transport to redeliver after the visibility timeout.
        with redis.Redis.from_url(redis_server.url) as store:
            key = RESULT_KEY_PREFIX + ack["task_id"]
            wait_until(lambda: store.exists(key), 15 * UNIT_S, what="the failure to be stored")
            meta = json.loads(store.get(key) or b"{}")
            assert meta["status"] == "FAILURE"
            assert meta["result"]["exc_type"] == "TimeLimitExceeded"
            wait_until(lambda: store.hlen("unacked") == 0, 15 * UNIT_S, what="the task to be acknowledged")
            assert store.llen("hard") == 0
        assert worker.log().count(f"[{ack['task_id']}] received") == 1

        # The worker replaced its killed pool process and serves the next requests. Their results
        # are looked up by id: the gateway waits only its 1 s, and on a busy machine the new pool
        # process can take longer than that to start.
        assert worker.alive()
    for number in (1001, 7):
        async with client(url) as ws:
            task_id = await submit(ws, number)
        assert_success(await result_by_id(url, task_id), task_id, number)
