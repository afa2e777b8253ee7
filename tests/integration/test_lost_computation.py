"""A computation whose worker was killed outright (SIGKILL of the worker's main process) is lost
until the visibility timeout hands its task out again (300 s by default). With result reuse, a
request for the same number must not join it once its worker's run has lapsed (no heartbeat
for WORKER_RUN_LEASE_S): it gets a new task, and so its result, as soon as a live worker can
compute it; whoever waited for the lost task gets that result too."""

from __future__ import annotations

import time

from factorial_ws.constants import WORKER_RUN_KEY_PREFIX, WORKER_RUN_LEASE_S
from factorial_ws.supervisor.redis_server import RedisServer
from peers import client
from support import START_TIMEOUT_S, UNIT_S, Launcher, redis_client, wait_until

from .fault_tools import LONG_NUMBER, assert_success, busy_pool_process, kill, submit, wait_gone

# The gateway's wait for a result; a request that joined the lost task gets "Timeout error" then.
GATEWAY_WAIT_S = 40
# One computation of LONG_NUMBER on a loaded machine, and its 5.6 MB reply.
COMPUTATION_S = 10


def worker_runs(redis_url: str) -> set[bytes]:
    """The keys of the worker runs whose heartbeat is alive."""
    with redis_client(redis_url) as r:
        return set(r.scan_iter(WORKER_RUN_KEY_PREFIX + "*"))


async def test_request_after_a_worker_kill_does_not_join_the_lost_computation(
    launch: Launcher, redis_server: RedisServer
) -> None:
    # One worker, restarted under the same name as a supervisor (`up`) does: the heartbeat of
    # that name is fresh again at once, yet the computation of the killed worker is still lost.
    worker = launch.worker(redis_server.url, queues="hard", concurrency=1, name="hard")
    _, url = launch.gateway(redis_server.url, HARD_TASK_TIMEOUT=GATEWAY_WAIT_S)
    async with client(url) as first, client(url) as second:
        lost_id = await submit(first, LONG_NUMBER)
        worker_pid, pool_pid = busy_pool_process([worker.pid])
        (killed_run,) = worker_runs(redis_server.url)
        kill(worker_pid)
        killed_at = time.monotonic()
        wait_gone([worker_pid, pool_pid])
        restarted = launch.worker(redis_server.url, queues="hard", concurrency=1, name="hard")
        # Both workers write the same log: the second "ready" is the restarted one's.
        wait_until(
            lambda: restarted.log().count(" ready.") == 2, what="the restarted worker", watch=[restarted]
        )
        # Known lost: the killed run's heartbeat lapsed.
        lapse_s = (WORKER_RUN_LEASE_S + 5) * UNIT_S
        wait_until(
            lambda: killed_run not in worker_runs(redis_server.url), lapse_s, what="the killed run's lapse"
        )
        up_at = time.monotonic()

        task_id = await submit(second, LONG_NUMBER)
        reply = await second.recv(timeout_s=START_TIMEOUT_S, keep_ints_as_text=True)
        answered_at = time.monotonic()
        assert_success(reply, task_id, LONG_NUMBER)
        assert task_id != lost_id
        # Whoever waited for the lost task gets the new task's result, under the id it knows.
        assert_success(await first.recv(timeout_s=5 * UNIT_S, keep_ints_as_text=True), lost_id, LONG_NUMBER)
    print(
        f"result {answered_at - killed_at:.1f} s after the kill, "
        f"{answered_at - up_at:.1f} s after the restart"
    )
    assert answered_at - up_at < COMPUTATION_S * UNIT_S
