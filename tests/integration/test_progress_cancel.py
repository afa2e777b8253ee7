"""Progress and cancel end to end (issue 13, parts 2 and 3): the real gateway, Redis and Celery
workers, and clients speaking raw WebSocket frames (the Python client library's progress states
and cancel at the end).

Proofs come from the processes, not from timing: a cancelled task that never ran is one its
worker logged as discarded and never as succeeded; a stopped one is one the worker terminated.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from factorial_ws import Client as LibraryClient
from factorial_ws import TaskCancelled
from factorial_ws.constants import (
    HARD_QUEUE,
    KOMBU_UNACKED_KEY,
    SOFT_QUEUE,
    TASK_CANCELLED,
    TASK_NOT_YOURS,
    UNKNOWN_TASK_ID,
)
from peers import Client, client
from support import REPLY_TIMEOUT_S, UNIT_S, Launcher, Proc, System, redis_client, wait_until

from .fault_tools import LONG_NUMBER, SLOW_NUMBER, factorial_digits

pytestmark = pytest.mark.long  # 20 s or more: started first (conftest.py)

CANCELLED_ID = "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"


# Redis URL, the one-process hard worker, the gateway's URL.
HardSystem = tuple[str, Proc, str]


def hard_system(launch: Launcher, *, gateway_process: bool = False, **settings: Any) -> HardSystem:
    """Redis, a soft worker, a one-process hard worker and a gateway: (Redis URL, the hard
    worker, the gateway's URL). The gateway runs in this process unless ``gateway_process``
    (a test that reads its log, or whose client load must not share its process)."""
    redis_url = launch.redis().url
    launch.worker(redis_url, queues="soft", concurrency=1, **settings)
    hard = launch.worker(redis_url, queues="hard", concurrency=1, **settings)
    if gateway_process:
        _, url = launch.gateway(redis_url, **settings)
    else:
        url = launch.in_process_gateway(redis_url, **settings)
    return redis_url, hard, url


def drained(redis_url: str) -> None:
    """Wait until no task is queued or running: both queues empty, and no message that a worker
    took is unacknowledged (kombu's ``unacked`` hash; a task's is acknowledged once it ended)."""
    with redis_client(redis_url) as redis:

        def idle() -> bool:
            return not (redis.llen(HARD_QUEUE) or redis.llen(SOFT_QUEUE) or redis.hlen(KOMBU_UNACKED_KEY))

        wait_until(idle, what="no task queued or running")


@pytest.fixture(scope="module")
def module_hard_system(module_launch: Launcher) -> HardSystem:
    """One hard_system for the tests of this module that use ``idle_hard_system``."""
    return hard_system(module_launch)


@pytest.fixture
def idle_hard_system(module_hard_system: HardSystem) -> HardSystem:
    """The module's hard_system, once no task is queued or running. Sharing it is safe: each test
    asks for numbers no other test of its module asks for (result reuse hands none of them an
    earlier test's result or computation), waits for the end of every task it leaves running
    and continues a worker it froze, and starts once the queues are drained, so its ``ahead``
    and ``started`` figures count its own tasks only; cancels, the gateway's cancel records and
    the worker's log lines are about task ids, which no two tests share. (test_cancel_rules
    uses these fixtures too, with a system of its own.)"""
    drained(module_hard_system[0])
    return module_hard_system


async def recv_raw(ws: Client, timeout_s: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
    """A reply with its factorial kept as its digits (int() of millions of digits is quadratic);
    the small integers (id, ahead) as ints."""
    reply = json.loads(await asyncio.wait_for(ws.connection.recv(), timeout_s), parse_int=str)
    assert isinstance(reply, dict), reply
    return {key: int(value) if key in ("id", "ahead") else value for key, value in reply.items()}


async def send(ws: Client, request_id: int, **fields: Any) -> None:
    await ws.send({**fields, "id": request_id})


async def replies_until(ws: Client, done: Any, timeout_s: float = 60 * UNIT_S) -> list[dict[str, Any]]:
    """Every reply, digits kept as text, up to and including the first for which ``done`` is true."""
    replies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while not replies or not done(replies[-1]):
        replies.append(await recv_raw(ws, max(0.1, deadline - time.monotonic())))
    return replies


async def successes(ws: Client, *task_ids: str, timeout_s: float = 60 * UNIT_S) -> list[dict[str, Any]]:
    """Every reply up to the success of each of ``task_ids``, in whatever order they come (the
    protocol's rule: a large result may still be read from Redis when a small one comes in)."""
    succeeded: set[str] = set()

    def all_succeeded(reply: dict[str, Any]) -> bool:
        if reply["type"] == "success":
            succeeded.add(reply["task_id"])
        return succeeded >= set(task_ids)

    return await replies_until(ws, all_succeeded, timeout_s)


async def submit(ws: Client, number: int, request_id: int, *, progress: bool = False) -> str:
    """Send a factorial request; its task id, from the ack (the next reply)."""
    fields: dict[str, Any] = {"type": "factorial", "number": number}
    if progress:
        fields["progress"] = True
    await send(ws, request_id, **fields)
    ack = await recv_raw(ws)
    assert ack == {"type": "result", "task_id": ack["task_id"], "id": request_id}, ack
    return str(ack["task_id"])


async def started(ws: Client, task_id: str, request_id: int) -> None:
    """Read this task's queued and started replies (progress was asked for)."""
    replies = await replies_until(ws, lambda reply: reply["type"] == "started")
    assert [reply["type"] for reply in replies] == ["queued", "started"], replies
    assert all(reply["task_id"] == task_id and reply["id"] == request_id for reply in replies)


async def cancel(ws: Client, task_id: str, request_id: int) -> list[dict[str, Any]]:
    """Cancel the task; every reply up to and including the cancel's own."""
    await send(ws, request_id, type="cancel", task_id=task_id)
    return await replies_until(ws, lambda reply: reply["type"] == "cancelled")


async def cancel_own_wait(ws: Client, task_id: str, waiting_id: int, cancel_id: int) -> None:
    """Cancel a task this connection waits for (request ``waiting_id``): that wait ends with
    ``Task cancelled``, then the cancel is confirmed."""
    assert await cancel(ws, task_id, cancel_id) == [
        {"type": "error", "result": TASK_CANCELLED, "task_id": task_id, "id": waiting_id},
        {"type": "cancelled", "task_id": task_id, "id": cancel_id},
    ]


def assert_discarded_unrun(worker: Proc, task_id: str) -> None:
    log = worker.log()
    assert f"Discarding revoked task: factorial_ws.factorial_hard[{task_id}]" in log
    assert f"[{task_id}] succeeded" not in log


async def assert_looked_up_as_cancelled(url: str, task_id: str) -> None:
    async with client(url) as ws:
        reply = await ws.request({"type": "result", "task_id": task_id})
    assert reply == {"type": "error", "result": TASK_CANCELLED, "task_id": task_id}


# --- progress ---------------------------------------------------------------------------------


async def test_progress_request_behind_three_others_on_one_hard_process_gets_queued_3_started_success(
    idle_hard_system: HardSystem,
) -> None:
    _, _, url = idle_hard_system
    async with client(url) as busy, client(url) as ws:
        first = await submit(busy, SLOW_NUMBER - 1, 1, progress=True)
        await started(busy, first, 1)  # running: the worker holds it, unacknowledged
        # Waiting in the queue; they and the one asking for progress only have to be there: quick
        # ones do.
        waiting = [
            await submit(busy, number, request_id) for request_id, number in ((2, 30_002), (3, 30_003))
        ]

        task_id = await submit(ws, 30_007, 7, progress=True)
        replies = await replies_until(ws, lambda reply: reply["type"] == "success")
        # The three before it ended first (one process, oldest first); read, so that the
        # connection closes at once rather than after its close timeout.
        busy_replies = await successes(busy, first, *waiting, timeout_s=REPLY_TIMEOUT_S)

    assert [reply["type"] for reply in replies] == ["queued", "started", "success"]
    assert replies[0] == {"type": "queued", "task_id": task_id, "ahead": 3, "id": 7}
    assert replies[1] == {"type": "started", "task_id": task_id, "id": 7}
    assert replies[2]["result"] == factorial_digits(30_007)
    assert [reply["type"] for reply in busy_replies] == ["success"] * 3


async def test_requests_without_progress_get_exactly_the_seeds_two_messages(system: System) -> None:
    async with connect(system.url, max_size=None) as ws:
        for number, digits in ((5, "120"), (1001, factorial_digits(1001))):
            await ws.send(json.dumps({"type": "factorial", "number": number}))
            ack = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S)
            task_id = json.loads(ack)["task_id"]
            assert ack == f'{{"type": "result", "task_id": "{task_id}"}}'
            result = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S)
            assert result == f'{{"type": "success", "task_id": "{task_id}", "result": {digits}}}'
        try:
            extra = await asyncio.wait_for(ws.recv(), 1 * UNIT_S)
        except TimeoutError:
            extra = None
    assert extra is None


async def test_a_lookup_with_progress_of_a_running_task_says_started(idle_hard_system: HardSystem) -> None:
    _, _, url = idle_hard_system
    async with client(url) as owner, client(url) as ws:
        task_id = await submit(owner, LONG_NUMBER - 1, 1, progress=True)
        await started(owner, task_id, 1)

        await send(ws, 5, type="result", task_id=task_id, progress=True)
        replies = await replies_until(ws, lambda reply: reply["type"] == "success")
        owners = await recv_raw(owner, 60 * UNIT_S)  # read, so that it closes at once

    assert [reply["type"] for reply in replies] == ["pending", "started", "success"]
    assert owners["type"] == "success" and owners["result"] == replies[-1]["result"]


# --- cancel -----------------------------------------------------------------------------------


async def test_cancel_of_a_queued_task_means_its_worker_never_runs_it(idle_hard_system: HardSystem) -> None:
    _, hard, url = idle_hard_system
    async with client(url) as ws:
        busy = await submit(ws, LONG_NUMBER - 2, 1, progress=True)
        await started(ws, busy, 1)
        task_id = await submit(ws, 32_000, 2)

        await cancel_own_wait(ws, task_id, 2, 3)
        after = await submit(ws, 32_001, 4)
        # The busy task's result, then the next one's: run one after the other, but delivered in
        # any order (see ``successes``), since a 5.6 MB result is still being read from Redis
        # when the small one comes in.
        replies = await successes(ws, busy, after)

    assert [reply["type"] for reply in replies] == ["success", "success"]
    assert_discarded_unrun(hard, task_id)
    await assert_looked_up_as_cancelled(url, task_id)


@pytest.mark.alone  # it times a cancel's turnaround: other tests beside it would skew the figure
async def test_cancel_of_a_running_million_factorial_starts_the_next_hard_task_within_a_second(
    launch: Launcher,
) -> None:
    _, hard, url = hard_system(launch)
    async with client(url) as ws:
        for round_ in range(5):  # the pool process is replaced each time, by a race-prone path
            task_id = await submit(ws, LONG_NUMBER - round_, 1, progress=True)
            await started(ws, task_id, 1)
            following = await submit(ws, 20_000 + round_, 2, progress=True)
            queued = await recv_raw(ws)
            assert queued == {"type": "queued", "task_id": following, "ahead": 1, "id": 2}

            cancelled_at = time.monotonic()
            await send(ws, 3, type="cancel", task_id=task_id)
            replies = await replies_until(ws, lambda reply: reply["type"] == "started")
            started_after_s = time.monotonic() - cancelled_at
            assert replies == [
                {"type": "error", "result": TASK_CANCELLED, "task_id": task_id, "id": 1},
                {"type": "cancelled", "task_id": task_id, "id": 3},
                {"type": "started", "task_id": following, "id": 2},
            ]
            assert started_after_s < 1.0 * UNIT_S, f"round {round_}: {started_after_s:.2f} s"
            result = await recv_raw(ws, 30 * UNIT_S)
            assert result["task_id"] == following and result["result"] == factorial_digits(20_000 + round_)
            assert f"Terminating {task_id} (9)" in hard.log()
            assert f"[{task_id}] succeeded" not in hard.log()

    await assert_looked_up_as_cancelled(url, task_id)


async def test_two_clients_on_one_computation_one_cancels_and_the_other_still_gets_the_result(
    launch: Launcher, idle_hard_system: HardSystem
) -> None:
    redis_url, hard, url = idle_hard_system
    _, other_url = launch.gateway(redis_url, name="gateway-2")  # the other waits on another process
    async with client(url) as canceller, client(other_url) as other:
        task_id = await submit(canceller, LONG_NUMBER, 1)
        await send(other, 9, type="result", task_id=task_id)
        assert await recv_raw(other) == {"type": "pending", "task_id": task_id, "id": 9}

        await cancel_own_wait(canceller, task_id, 1, 2)
        result = await recv_raw(other, 60 * UNIT_S)

    assert result["type"] == "success" and result["result"] == factorial_digits(LONG_NUMBER)
    assert f"Terminating {task_id}" not in hard.log()


async def test_a_cancel_from_a_client_that_waits_for_nothing_does_not_stop_what_others_wait_for(
    idle_hard_system: HardSystem,
) -> None:
    _, hard, url = idle_hard_system
    async with client(url) as owner, client(url) as stranger:
        task_id = await submit(owner, LONG_NUMBER - 3, 1)

        reply = await stranger.request({"type": "cancel", "task_id": task_id, "id": 5})
        assert reply == {"type": "error", "result": TASK_NOT_YOURS, "task_id": task_id, "id": 5}
        result = await recv_raw(owner, 60 * UNIT_S)

    assert result["type"] == "success" and result["result"] == factorial_digits(LONG_NUMBER - 3)
    assert f"Terminating {task_id}" not in hard.log()


async def test_cancel_of_a_finished_task_gets_its_result_instead(system: System) -> None:
    async with client(system.url) as ws:
        task_id = await submit(ws, 20, 1)
        assert (await recv_raw(ws))["type"] == "success"

        await send(ws, 2, type="cancel", task_id=task_id)
        reply = await recv_raw(ws)

    assert reply == {"type": "success", "task_id": task_id, "result": "2432902008176640000", "id": 2}


async def test_cancel_of_an_unknown_task_id_says_so(system: System) -> None:
    async with client(system.url) as ws:
        reply = await ws.request({"type": "cancel", "task_id": CANCELLED_ID, "id": 4})

    assert reply == {"type": "error", "result": UNKNOWN_TASK_ID, "task_id": CANCELLED_ID, "id": 4}


async def test_a_task_cancelled_while_no_worker_runs_is_discarded_by_the_worker_that_starts_later(
    launch: Launcher,
) -> None:
    redis_url = launch.redis().url
    launch.worker(redis_url, queues="soft", concurrency=1)
    url = launch.in_process_gateway(redis_url)
    async with client(url) as ws:
        task_id = await submit(ws, 3000, 1)
        replies = await cancel(ws, task_id, 2)
        assert replies[-1] == {"type": "cancelled", "task_id": task_id, "id": 2}

        hard = launch.worker(redis_url, queues="hard", concurrency=1)
        after = await submit(ws, 3001, 3)
        assert (await recv_raw(ws, 30 * UNIT_S))["task_id"] == after

    assert_discarded_unrun(hard, task_id)
    await assert_looked_up_as_cancelled(url, task_id)


async def test_cancelling_twice_says_cancelled_twice(launch: Launcher) -> None:
    redis_url = launch.redis().url
    url = launch.in_process_gateway(redis_url)  # no worker: the task stays queued
    async with client(url) as ws:
        task_id = await submit(ws, 4000, 1)
        for request_id in (2, 3):
            replies = await cancel(ws, task_id, request_id)
            assert replies[-1] == {"type": "cancelled", "task_id": task_id, "id": request_id}


# --- with one computation per number (RESULT_REUSE, the default) ------------------------------


async def test_two_requests_for_one_number_share_a_task_and_one_cancel_leaves_the_other_its_result(
    idle_hard_system: HardSystem,
) -> None:
    _, hard, url = idle_hard_system
    async with client(url) as canceller, client(url) as other:
        task_id = await submit(canceller, LONG_NUMBER - 4, 1)
        assert await submit(other, LONG_NUMBER - 4, 9) == task_id  # the same computation

        await cancel_own_wait(canceller, task_id, 1, 2)
        result = await recv_raw(other, 60 * UNIT_S)

    assert result["type"] == "success" and result["result"] == factorial_digits(LONG_NUMBER - 4)
    assert f"Terminating {task_id}" not in hard.log()


async def test_a_progress_request_joining_a_started_computation_hears_started_at_once(
    idle_hard_system: HardSystem,
) -> None:
    _, _, url = idle_hard_system
    async with client(url) as first, client(url) as joiner:
        task_id = await submit(first, LONG_NUMBER - 5, 1, progress=True)
        await started(first, task_id, 1)

        assert await submit(joiner, LONG_NUMBER - 5, 5, progress=True) == task_id
        replies = await replies_until(joiner, lambda reply: reply["type"] == "success")
        firsts = await recv_raw(first, 60 * UNIT_S)  # read, so that it closes at once

    assert [reply["type"] for reply in replies] == ["started", "success"]  # no queued: not its own
    assert firsts["type"] == "success" and firsts["result"] == replies[-1]["result"]


async def test_the_next_request_for_a_cancelled_number_computes_it_again(
    idle_hard_system: HardSystem,
) -> None:
    _, _, url = idle_hard_system
    async with client(url) as ws:
        cancelled_id = await submit(ws, 300_000, 1)
        await send(ws, 2, type="cancel", task_id=cancelled_id)
        await replies_until(ws, lambda reply: reply["type"] == "cancelled")

        again = await submit(ws, 300_000, 3)
        result = await recv_raw(ws, 30 * UNIT_S)

    assert again != cancelled_id
    assert result["task_id"] == again and result["result"] == factorial_digits(300_000)


# --- the client library (factorial_ws.Client) ---------------------------------------------------


async def test_a_progress_handle_follows_its_task_and_cancel_takes_the_next_one_back(
    idle_hard_system: HardSystem,
) -> None:
    _, hard, url = idle_hard_system
    async with LibraryClient(url) as library:
        running = await library.submit(SLOW_NUMBER, digits=True, progress=True)
        async for state in running.states():
            if state == "started":
                break
        waiting = await library.submit(LONG_NUMBER - 6, digits=True, progress=True)
        assert await asyncio.wait_for(waiting.cancel(), 10 * UNIT_S) is True
        with pytest.raises(TaskCancelled):
            await waiting
        states = [state async for state in running.states()]
        digits = await running
        assert await library.cancel(running.task_id) is False  # it had ended: its result came instead

    assert states == ["pending", "queued", "started", "done"]
    assert running.ahead == 0 and digits == factorial_digits(SLOW_NUMBER)
    assert waiting.state == "cancelled" and waiting.ahead == 1
    assert f"[{waiting.task_id}] succeeded" not in hard.log()
