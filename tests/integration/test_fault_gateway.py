"""The gateway restarted while tasks run, and clients that leave before their result: the tasks and
their results live in Redis, not in the gateway, so nothing is lost and nothing is left behind."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import redis
from websockets.frames import CloseCode

from factorial_ws.gateway.server import SHUTDOWN_GRACE_S
from factorial_ws.gateway.stored_tasks import result_key
from factorial_ws.supervisor.probes import port_open
from factorial_ws.worker.result_backend import note_channel
from peers import client
from support import UNIT_S, Launcher, System, paused, wait_until

from .fault_tools import SLOW_NUMBER, assert_success, busy_child, children_of, metric, result_by_id, submit

RESULT_EXPIRES_S = 600
# The gateway exits within its grace for open connections plus start-up of the interpreter's
# shutdown; generous for 2 busy cores.
EXIT_LIMIT_S = SHUTDOWN_GRACE_S + 3 * UNIT_S


@pytest.fixture(scope="module")
def quiet_system(module_launch: Launcher) -> System:
    """Redis, one worker with one pool process, and a gateway, for this module alone (its tests
    freeze the worker and read the gateway's gauges)."""
    return module_launch.system(worker_concurrency=1, RESULT_EXPIRES=RESULT_EXPIRES_S)


async def test_gateway_restarted_while_tasks_run_closes_with_1001_and_results_are_fetched_by_id(
    launch: Launcher, quiet_system: System
) -> None:
    system = quiet_system
    gateway, url = launch.gateway(system.redis_url, name="restarted")
    port = int(url.rsplit(":", 1)[1].strip("/"))
    numbers = [SLOW_NUMBER, 10, 2000]  # one pool process: the two small ones queue behind
    async with client(url) as ws:
        task_ids = [await submit(ws, number) for number in numbers]
        busy_child(system.workers[0].pid)
        stopped_at = time.monotonic()
        gateway.signal(signal.SIGTERM)
        await asyncio.wait_for(ws.connection.wait_closed(), EXIT_LIMIT_S)
        assert ws.connection.close_code == CloseCode.GOING_AWAY
        assert not port_open(port)  # no longer accepting
    assert gateway.process.wait(EXIT_LIMIT_S) == 0
    assert time.monotonic() - stopped_at < EXIT_LIMIT_S

    _, url = launch.gateway(system.redis_url, port=port, name="restarted-again")
    for task_id, number in zip(task_ids, numbers, strict=True):
        assert_success(await result_by_id(url, task_id), task_id, number)


async def test_client_that_leaves_before_its_result_leaves_no_waiting_state_and_result_stays(
    quiet_system: System,
) -> None:
    system = quiet_system
    worker_pid = system.workers[0].pid
    # The worker and its pool frozen: the task stays queued while we look.
    with paused(worker_pid, *children_of(worker_pid)):
        async with client(system.url) as ws:
            task_id = await submit(ws, 20)
            channel = note_channel(task_id)
            assert metric(system.url, "factorial_ws_tasks_waiting") == 1
            assert _subscribers(system.redis_url, channel) == 1
        wait_until(
            lambda: (
                metric(system.url, "factorial_ws_tasks_waiting") == 0
                and _subscribers(system.redis_url, channel) == 0
            ),
            10 * UNIT_S,
            what="the gateway to drop the waiting state",
        )
    reply = await result_by_id(system.url, task_id)
    assert_success(reply, task_id, 20)
    with redis.Redis.from_url(system.redis_url) as r:
        assert 0 < int(r.ttl(result_key(task_id))) <= RESULT_EXPIRES_S


def _subscribers(redis_url: str, channel: str) -> int:
    with redis.Redis.from_url(redis_url) as r:
        return int(r.pubsub_numsub(channel)[0][1])
