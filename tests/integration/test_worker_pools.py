"""The seed also starts workers with ``-P threads`` and ``--pool=solo``. They work, but cannot
enforce a time limit (only the prefork pool kills a task's process): such a worker says so in
one warning line at start."""

from __future__ import annotations

import signal

import pytest
import redis

from factorial_ws.worker.processes import worker_is_live
from peers import client
from support import PYTHON, Launcher, Proc, process_env, wait_until

WARNING = "cannot enforce the task time limits"


def seed_worker(launch: Launcher, redis_url: str, pool_option: list[str]) -> Proc:
    """The seed's command: celery -A celeryqueue worker <pool option> --loglevel=INFO -Q soft,hard."""
    hostname = f"{pool_option[-1].removeprefix('--pool=')}@test"
    command = [
        PYTHON, "-m", "celery", "-A", "celeryqueue", "worker", *pool_option,
        "--loglevel=INFO", "-Q", "soft,hard", "-n", hostname,
    ]  # fmt: skip
    worker = launch.process(
        hostname.split("@")[0], command, process_env(redis_url), stop_signal=signal.SIGKILL, together=True
    )
    with redis.Redis.from_url(redis_url) as r:
        wait_until(lambda: worker_is_live(r, hostname, ["soft", "hard"]), what=f"worker {hostname}")
    return worker


@pytest.mark.parametrize("pool_option", [["--pool=solo"], ["-P", "threads"]], ids=["solo", "threads"])
async def test_a_worker_whose_pool_cannot_enforce_time_limits_says_so_once_and_still_serves(
    launch: Launcher, pool_option: list[str]
) -> None:
    server = launch.redis()
    worker = seed_worker(launch, server.url, pool_option)
    url = launch.in_process_gateway(server.url)  # the test reads the worker's log, not the gateway's
    async with client(url) as ws:
        ack, done = await ws.factorial(5)
    assert done == {"type": "success", "task_id": ack["task_id"], "result": 120}
    warnings = [line for line in worker.log().splitlines() if WARNING in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], worker.log()[-2000:]
    assert "HARD_TASK_TIMEOUT" in warnings[0]


def test_a_prefork_worker_gives_no_such_warning(launch: Launcher) -> None:
    server = launch.redis()
    worker = launch.worker(server.url, concurrency=1)
    assert WARNING not in worker.log()
