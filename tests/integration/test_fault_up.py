"""`factorial-ws up` killed with SIGKILL, then started again on the same data folder."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import redis

from factorial_ws.constants import HARD_QUEUE, QUEUES, WORKERS_KEY_PREFIX
from factorial_ws.processes import free_port
from support import UNIT_S, Launcher, Proc, client, process_env, wait_until

from .fault_tools import (
    LONG_NUMBER,
    assert_success,
    descendants_of,
    is_running,
    kill_if_running,
    result_by_id,
    submit,
    wait_gone,
)


def start_up(launch: Launcher, name: str, settings: dict[str, object]) -> tuple[Proc, str]:
    """`factorial-ws up` with its private Redis; returns it and that Redis's URL once both its
    workers beat."""
    since = time.time()
    up = launch.up(process_env(None, **settings), name=name)
    found = re.search(r"private Redis on (\S+),", up.log())
    assert found, up.log()[-3000:]
    redis_url = found.group(1)
    wait_until(lambda: _workers_beating_since(redis_url, since), what=f"{name}'s workers", watch=[up])
    return up, redis_url


def _workers_beating_since(redis_url: str, since: float) -> bool:
    try:
        with redis.Redis.from_url(redis_url, socket_connect_timeout=0.5 * UNIT_S) as r:
            return all(r.zrangebyscore(WORKERS_KEY_PREFIX + queue, since, "+inf") for queue in QUEUES)
    except redis.ConnectionError:
        return False


async def test_up_killed_with_sigkill_and_restarted_keeps_queued_tasks_and_results_and_no_leftovers(
    launch: Launcher, tmp_path: Path
) -> None:
    ws_port = free_port()
    url = f"ws://127.0.0.1:{ws_port}/"
    settings: dict[str, object] = {
        "FACTORIAL_WS_DATA_DIR": tmp_path / "data",
        "WS_HOST": "127.0.0.1",
        "WS_PORT": ws_port,
        "HARD_CONCURRENCY": 1,  # one hard task at a time: the next ones wait in the queue
        # The task running when `up` dies is redelivered once this visibility timeout passes.
        "HARD_TASK_TIMEOUT": 5,
        "VISIBILITY_TIMEOUT": 11,
    }
    first, redis_url = start_up(launch, "up-1", settings)
    async with client(url) as ws:
        ack, done = await ws.factorial(5)
        assert done == {"type": "success", "task_id": ack["task_id"], "result": 120}
        running = await submit(ws, LONG_NUMBER)
        queued = {await submit(ws, number): number for number in (2000, 3000)}
        with redis.Redis.from_url(redis_url) as r:
            assert r.llen(HARD_QUEUE) == len(queued)  # still waiting for the busy pool
        old = [first.pid, *descendants_of(first.pid)]
        launch.callback(kill_if_running, old)  # should the test fail before they are gone
        assert len(old) >= 5  # up, Redis, two workers (and their pools), the gateway
        first.signal(signal.SIGKILL)
    wait_gone(old)  # every child dies with `up` (PDEATHSIG), without anyone's help

    start_up(launch, "up-2", settings)
    assert not any(is_running(pid) for pid in old)
    # The stored result, the queued tasks and the one that was running all come back.
    expected = {ack["task_id"]: 5, **queued, running: LONG_NUMBER}
    for task_id, number in expected.items():
        assert_success(await result_by_id(url, task_id), task_id, number)
