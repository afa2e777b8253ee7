"""Both timeouts of the seed: the gateway's wait limit, and a task killed by its time limit."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from factorial_ws.constants import RESULT_KEY_PREFIX
from factorial_ws.supervisor.redis_server import RedisServer
from support import client, start_gateway, start_worker, wait_until

GATEWAY_WAIT_S = 2


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with RedisServer(tmp_path / "redis") as server:
        yield server.url


async def test_gateway_sends_timeout_error_when_no_worker_answers_and_the_task_is_kept(
    redis_url: str, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    soft = start_worker(redis_url, logs, queues="soft", name="soft")
    gateway, url = start_gateway(redis_url, logs, HARD_TASK_TIMEOUT=GATEWAY_WAIT_S)
    hard = None
    try:
        async with client(url) as ws:
            ack = await ws.request({"type": "factorial", "number": 5000, "id": "t"})
            started = time.monotonic()
            timeout = await ws.recv(timeout_s=20)
            waited_s = time.monotonic() - started
            assert timeout == {
                "type": "error",
                "result": "Timeout error",
                "task_id": ack["task_id"],
                "id": "t",
            }
            assert GATEWAY_WAIT_S - 0.5 <= waited_s < GATEWAY_WAIT_S + 8
            await ws.factorial(5)  # the connection goes on

            # The task was not dropped: once a worker for its queue appears, it can be fetched.
            hard = start_worker(redis_url, logs, queues="hard", name="hard")
            store = redis.Redis.from_url(redis_url)
            try:
                wait_until(lambda: store.exists(RESULT_KEY_PREFIX + ack["task_id"]), 30, what="hard result")
            finally:
                store.close()
            reply = await ws.request({"type": "result", "task_id": ack["task_id"]})
            assert reply == {"type": "success", "task_id": ack["task_id"], "result": math.factorial(5000)}
    finally:
        for proc in (gateway, hard, soft):
            if proc is not None:
                proc.stop()


async def test_task_over_its_time_limit_is_killed_reported_as_timeout_and_not_redelivered(
    redis_url: str, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    # The gateway's 3 s limit travels in the task message and wins over the worker's own 30 s
    # (as with apply_async): the worker kills the task after 3 s, which the stored
    # TimeLimitExceeded below proves (the gateway also stops waiting after 3 s).
    worker = start_worker(
        redis_url, logs, queues="soft,hard", concurrency=1, HARD_TASK_TIMEOUT=30, MAX_NUMBER=100_000_000
    )
    gateway, url = start_gateway(redis_url, logs, HARD_TASK_TIMEOUT=3, MAX_NUMBER=100_000_000)
    try:
        async with client(url) as ws:
            ack = await ws.request({"type": "factorial", "number": 10_000_000})  # > 10 s in GMP
            started = time.monotonic()
            reply = await ws.recv(timeout_s=25)
            assert reply == {"type": "error", "result": "Timeout error", "task_id": ack["task_id"]}
            assert time.monotonic() - started < 20

            # The failure is stored as Celery's time-limit error, and the task is acknowledged:
            # nothing left for the Redis transport to redeliver after the visibility timeout.
            store = redis.Redis.from_url(redis_url)
            try:
                key = RESULT_KEY_PREFIX + ack["task_id"]
                wait_until(lambda: store.exists(key), 15, what="the failure to be stored")
                meta = json.loads(store.get(key) or b"{}")
                assert meta["status"] == "FAILURE"
                assert meta["result"]["exc_type"] == "TimeLimitExceeded"
                wait_until(lambda: store.hlen("unacked") == 0, 15, what="the task to be acknowledged")
                assert store.llen("hard") == 0
            finally:
                store.close()
            assert worker.log().count(f"[{ack['task_id']}] received") == 1

            # The worker replaced its killed pool process and serves the next request.
            assert worker.alive()
            ack, result = await ws.factorial(1001, timeout_s=30)
            assert result == {"type": "success", "task_id": ack["task_id"], "result": math.factorial(1001)}
            ack, result = await ws.factorial(7, timeout_s=30)
            assert result["result"] == 5040
    finally:
        gateway.stop()
        worker.stop()
