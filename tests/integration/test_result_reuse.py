"""n! is a pure function, so the same number is computed once: requests for a number whose task is
queued, running or finished get that task's id and its result (RESULT_REUSE, on by default). A
computation that failed is forgotten, and RESULT_REUSE=0 gives every request its own task."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import gmpy2
import pytest
import redis

from factorial_ws.constants import HARD_TASK_NAME, RESULT_KEY_PREFIX, SOFT_TASK_NAME
from peers import Client, client
from support import REPLY_TIMEOUT_S, UNIT_S, Launcher, Proc, wait_until

NUMBER = 300_000  # about 0.2 s of GMP work, 1.5 MB of digits
CLIENTS = 50
HUGE_NUMBER = 10**7  # about 15 s of GMP work: a task killed by its 1 s time limit
Shared = tuple[str, Proc]  # Redis' URL, the worker


@pytest.fixture(scope="module")
def redis_and_worker(module_launch: Launcher) -> Shared:
    """One Redis and one worker for the module; each test runs its own in-process gateway (its
    own RESULT_REUSE and timeouts). Safe to share: each test asks for numbers no other asks for
    (NUMBER, 500, HUGE_NUMBER), so no stored result of one is reused by another, and each reads
    only the part of the worker's log written since it began."""
    server = module_launch.redis()
    return server.url, module_launch.worker(server.url, concurrency=2, MAX_NUMBER=HUGE_NUMBER)


def received(log: str, task_name: str) -> list[str]:
    """The ids of the ``task_name`` tasks a worker's log says it received. A "received" line is
    written before the task runs, so it is in the log once the result is out; its "succeeded"
    line is written after the result is stored and may not be yet."""
    return re.findall(rf"{re.escape(task_name)}\[([0-9a-f-]+)\] received", log)


async def crowd(url: str, number: int, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``count`` connections, opened first, then all asking for ``number!`` at the same moment."""
    opened: list[None] = []
    all_open, start = asyncio.Event(), asyncio.Event()

    async def ask() -> tuple[dict[str, Any], dict[str, Any]]:
        """One connection's request, sent once every connection is open: the ack and the end."""
        async with client(url) as ws:
            opened.append(None)
            if len(opened) == count:
                all_open.set()
            await start.wait()
            await ws.send({"type": "factorial", "number": number})
            ack = await ws.recv(keep_ints_as_text=True)
            return ack, await ws.recv(60 * UNIT_S, keep_ints_as_text=True)

    asks = [asyncio.create_task(ask()) for _ in range(count)]
    await asyncio.wait_for(all_open.wait(), REPLY_TIMEOUT_S)  # every handshake is done
    start.set()
    return await asyncio.gather(*asks)


async def test_fifty_clients_asking_for_the_same_number_share_one_computation(
    launch: Launcher, redis_and_worker: Shared
) -> None:
    redis_url, worker = redis_and_worker
    log_start = len(worker.log())
    url = launch.in_process_gateway(redis_url)

    replies = await crowd(url, NUMBER, CLIENTS)

    task_ids = {ack["task_id"] for ack, _ in replies}
    assert len(task_ids) == 1, f"{len(task_ids)} task ids"
    [task_id] = task_ids
    assert all(ack == {"type": "result", "task_id": task_id} for ack, _ in replies)
    results = {done["result"] for _, done in replies}
    assert len(results) == 1 and all(done["type"] == "success" for _, done in replies)
    assert gmpy2.mpz(results.pop()) == gmpy2.fac(NUMBER)
    # One execution, as the worker saw it.
    assert received(worker.log()[log_start:], HARD_TASK_NAME) == [task_id]

    # Asked again once it is done: the stored result at once, still no second computation.
    async with client(url) as ws:
        ack = await ws.request({"type": "factorial", "number": NUMBER, "id": 1})
        assert ack == {"type": "result", "task_id": task_id, "id": 1}
        done = await ws.recv(keep_ints_as_text=True)
        assert done["type"] == "success" and done["task_id"] == task_id
    assert received(worker.log()[log_start:], HARD_TASK_NAME) == [task_id]


async def test_with_result_reuse_off_every_request_is_its_own_task(
    launch: Launcher, redis_and_worker: Shared
) -> None:
    redis_url, worker = redis_and_worker
    log_start = len(worker.log())
    url = launch.in_process_gateway(redis_url, RESULT_REUSE=0)
    number = 500  # the same crowd as above, on a number that costs nothing (a soft one)

    replies = await crowd(url, number, CLIENTS)

    task_ids = {ack["task_id"] for ack, _ in replies}
    assert len(task_ids) == CLIENTS
    assert {done["task_id"] for _, done in replies} == task_ids
    assert all(done["result"] == str(gmpy2.fac(number)) for _, done in replies)
    assert sorted(received(worker.log()[log_start:], SOFT_TASK_NAME)) == sorted(task_ids)


async def test_a_failed_computation_is_forgotten_and_the_next_request_computes_again(
    launch: Launcher, redis_and_worker: Shared
) -> None:
    redis_url, _ = redis_and_worker
    # Hard tasks are killed after 1 s (the limit travels in the task message): HUGE_NUMBER!
    # always fails.
    url = launch.in_process_gateway(
        redis_url, MAX_NUMBER=HUGE_NUMBER, HARD_TASK_TIMEOUT=1, SOFT_TASK_TIMEOUT=1
    )
    store = redis.Redis.from_url(redis_url)

    async with client(url) as ws:
        first = await failed(ws, HUGE_NUMBER)
        # Stored as failed (the gateway's own 1 s wait may end first): now it is forgotten.
        wait_until(lambda: store.exists(RESULT_KEY_PREFIX + first), 30 * UNIT_S, "the failure stored")
        second = await failed(ws, HUGE_NUMBER)
    assert first != second
    assert b'"status": "FAILURE"' in (store.get(RESULT_KEY_PREFIX + first) or b"")


async def failed(ws: Client, number: int) -> str:
    ack = await ws.request({"type": "factorial", "number": number})
    done = await ws.recv(timeout_s=30 * UNIT_S)
    assert done == {"type": "error", "result": "Timeout error", "task_id": ack["task_id"]}
    return str(ack["task_id"])
