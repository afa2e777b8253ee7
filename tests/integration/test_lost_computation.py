"""A computation whose worker was killed outright (SIGKILL of the worker's main process) is lost
until the visibility timeout hands its task out again (300 s by default). With result reuse, a
request for the same number must not join it once its worker's heartbeat is gone: it gets a new
task, and so its result, as soon as a live worker can compute it."""

from __future__ import annotations

import time

from factorial_ws.constants import WORKER_STALE_S
from factorial_ws.supervisor.redis_server import RedisServer
from support import UNIT_S, Launcher, client

from .fault_tools import LONG_NUMBER, assert_success, busy_pool_process, kill, submit, wait_gone

# The gateway's wait for a result; a request that joined the dead task gets "Timeout error" then.
GATEWAY_WAIT_S = 40


async def test_request_after_a_worker_kill_does_not_join_the_lost_computation(
    launch: Launcher, redis_server: RedisServer
) -> None:
    # One worker, restarted under the same name as a supervisor (`up`) does: the heartbeat of
    # that name is fresh again, yet the computation of the killed worker is still lost.
    worker = launch.worker(redis_server.url, queues="hard", concurrency=1, name="hard")
    _, url = launch.gateway(redis_server.url, HARD_TASK_TIMEOUT=GATEWAY_WAIT_S)
    async with client(url) as first:
        lost_id = await submit(first, LONG_NUMBER)
        worker_pid, pool_pid = busy_pool_process([worker.pid])
        kill(worker_pid)
        killed_at = time.monotonic()
        wait_gone([worker_pid, pool_pid])
    launch.worker(redis_server.url, queues="hard", concurrency=1, name="hard")
    async with client(url) as second:
        asked_at = time.monotonic()
        task_id = await submit(second, LONG_NUMBER)
        reply = await second.recv(timeout_s=(WORKER_STALE_S + 20) * UNIT_S, keep_ints_as_text=True)
    answered_at = time.monotonic()
    assert_success(reply, task_id, LONG_NUMBER)
    assert task_id != lost_id
    # Once the dead worker's heartbeat is stale (WORKER_STALE_S after its last beat), plus one
    # computation: not the gateway's whole wait, nor the visibility timeout.
    print(f"result {answered_at - killed_at:.1f} s after the kill, {answered_at - asked_at:.1f} s after asking")
    assert answered_at - killed_at < (WORKER_STALE_S + 10) * UNIT_S
