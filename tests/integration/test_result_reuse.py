"""n! is a pure function, so the same number is computed once: requests for a number whose task is
queued, running or finished get that task's id and its result (RESULT_REUSE, on by default). A
computation that failed is forgotten, and RESULT_REUSE=0 gives every request its own task."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import gmpy2
import redis

from factorial_ws.constants import HARD_TASK_NAME, RESULT_KEY_PREFIX, SOFT_TASK_NAME
from support import UNIT_S, Client, Launcher, client, wait_until

NUMBER = 300_000  # about 0.2 s of GMP work, 1.5 MB of digits
CLIENTS = 50


def received(log: str, task_name: str) -> list[str]:
    """The ids of the ``task_name`` tasks a worker's log says it received. A "received" line is
    written before the task runs, so it is in the log once the result is out; its "succeeded"
    line is written after the result is stored and may not be yet."""
    return re.findall(rf"{re.escape(task_name)}\[([0-9a-f-]+)\] received", log)


async def ask(url: str, number: int, start: asyncio.Event) -> tuple[dict[str, Any], dict[str, Any]]:
    """One connection's request for ``number!``, sent when ``start`` is set: the ack and the end."""
    async with client(url) as ws:
        await start.wait()
        await ws.send({"type": "factorial", "number": number})
        ack = await ws.recv(keep_ints_as_text=True)
        return ack, await ws.recv(60 * UNIT_S, keep_ints_as_text=True)


async def crowd(url: str, number: int, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``count`` connections, opened first, then all asking for ``number!`` at the same moment."""
    start = asyncio.Event()
    asks = [asyncio.create_task(ask(url, number, start)) for _ in range(count)]
    await asyncio.sleep(1 * UNIT_S)  # every connection is open and waiting for the signal
    start.set()
    return await asyncio.gather(*asks)


async def test_fifty_clients_asking_for_the_same_number_share_one_computation(launch: Launcher) -> None:
    server = launch.redis()
    worker = launch.worker(server.url, concurrency=2)
    url = launch.in_process_gateway(server.url)

    replies = await crowd(url, NUMBER, CLIENTS)

    task_ids = {ack["task_id"] for ack, _ in replies}
    assert len(task_ids) == 1, f"{len(task_ids)} task ids"
    [task_id] = task_ids
    assert all(ack == {"type": "result", "task_id": task_id} for ack, _ in replies)
    results = {done["result"] for _, done in replies}
    assert len(results) == 1 and all(done["type"] == "success" for _, done in replies)
    assert gmpy2.mpz(results.pop()) == gmpy2.fac(NUMBER)
    # One execution, as the worker saw it.
    assert received(worker.log(), HARD_TASK_NAME) == [task_id]

    # Asked again once it is done: the stored result at once, still no second computation.
    async with client(url) as ws:
        ack = await ws.request({"type": "factorial", "number": NUMBER, "id": 1})
        assert ack == {"type": "result", "task_id": task_id, "id": 1}
        done = await ws.recv(keep_ints_as_text=True)
        assert done["type"] == "success" and done["task_id"] == task_id
    assert received(worker.log(), HARD_TASK_NAME) == [task_id]


async def test_with_result_reuse_off_every_request_is_its_own_task(launch: Launcher) -> None:
    server = launch.redis()
    worker = launch.worker(server.url, concurrency=2)
    url = launch.in_process_gateway(server.url, RESULT_REUSE=0)
    number = 500  # the same crowd as above, on a number that costs nothing (a soft one)

    replies = await crowd(url, number, CLIENTS)

    task_ids = {ack["task_id"] for ack, _ in replies}
    assert len(task_ids) == CLIENTS
    assert {done["task_id"] for _, done in replies} == task_ids
    assert all(done["result"] == str(gmpy2.fac(number)) for _, done in replies)
    assert sorted(received(worker.log(), SOFT_TASK_NAME)) == sorted(task_ids)


async def test_a_failed_computation_is_forgotten_and_the_next_request_computes_again(
    launch: Launcher,
) -> None:
    server = launch.redis()
    # Hard tasks are killed after 1 s (the limit travels in the task message): 10**7! (about 15 s
    # of GMP work) always fails.
    launch.worker(server.url, concurrency=1, MAX_NUMBER=10**7)
    url = launch.in_process_gateway(server.url, MAX_NUMBER=10**7, HARD_TASK_TIMEOUT=1, SOFT_TASK_TIMEOUT=1)
    store = redis.Redis.from_url(server.url)

    async with client(url) as ws:
        first = await failed(ws, 10**7)
        # Stored as failed (the gateway's own 1 s wait may end first): now it is forgotten.
        wait_until(lambda: store.exists(RESULT_KEY_PREFIX + first), 30 * UNIT_S, "the failure stored")
        second = await failed(ws, 10**7)
    assert first != second
    assert b'"status": "FAILURE"' in (store.get(RESULT_KEY_PREFIX + first) or b"")


async def failed(ws: Client, number: int) -> str:
    ack = await ws.request({"type": "factorial", "number": number})
    done = await ws.recv(timeout_s=30 * UNIT_S)
    assert done == {"type": "error", "result": "Timeout error", "task_id": ack["task_id"]}
    return str(ack["task_id"])
