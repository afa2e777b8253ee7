"""The protocol end to end, through the real gateway, Redis and Celery worker processes."""

from __future__ import annotations

import math
import time
from typing import Any

import gmpy2
import pytest

from factorial_ws.protocol import is_task_id
from factorial_ws.supervisor.redis_server import RedisServer
from peers import Client, client
from support import UNIT_S, Launcher, System, wait_until

NUMBER_MAX = 1_000_000  # the default MAX_NUMBER the shared system runs with


async def assert_still_serving(ws: Client, number: int = 6) -> None:
    ack, result = await ws.factorial(number)
    assert result == {"type": "success", "task_id": ack["task_id"], "result": math.factorial(number)}


# --- errors ---------------------------------------------------------------------------------

INVALID_FRAMES: list[tuple[Any, str]] = [
    ("not json", "JSON decode error"),
    ('{"type": "factorial", "number": 5', "JSON decode error"),
    ('{"type": "factorial", "number": NaN}', "JSON decode error"),
    ('{"type": "factorial", "number": Infinity}', "JSON decode error"),
    ({"type": "square", "number": 5}, "Unknown task"),
    ({"type": 5, "number": 5}, "Unknown task"),
    ([1, 2], "Invalid request: expected a JSON object"),
    ("42", "Invalid request: expected a JSON object"),
    ({"number": 5}, "Invalid request: missing field 'type'"),
    ({"type": "factorial"}, "Invalid request: missing field 'number'"),
    ({"type": "factorial", "number": -1}, "Invalid request: 'number' must not be negative"),
    ({"type": "factorial", "number": 5.5}, "Invalid request: 'number' must be an integer"),
    ('{"type": "factorial", "number": 5.0}', "Invalid request: 'number' must be an integer"),
    ({"type": "factorial", "number": "5"}, "Invalid request: 'number' must be an integer"),
    ({"type": "factorial", "number": True}, "Invalid request: 'number' must be an integer"),
    ({"type": "factorial", "number": None}, "Invalid request: 'number' must be an integer"),
    (
        {"type": "factorial", "number": NUMBER_MAX + 1},
        f"Invalid request: 'number' must be at most {NUMBER_MAX}",
    ),
    (
        '{"type": "factorial", "number": ' + "9" * 5000 + "}",
        f"Invalid request: 'number' must be at most {NUMBER_MAX}",
    ),
    ({"type": "result"}, "Invalid request: missing field 'task_id'"),
    ({"type": "result", "task_id": "nope"}, "Invalid request: 'task_id' must be a task id (a UUID)"),
    (
        b'{"type": "factorial", "number": 5}',
        "Invalid request: binary frames are not supported; send JSON text",
    ),
]


async def test_every_bad_request_gets_its_error_and_the_connection_goes_on(system: System) -> None:
    async with client(system.url) as ws:
        for frame, message in INVALID_FRAMES:
            reply = await ws.request(frame)
            assert reply == {"type": "error", "result": message}, frame
            await assert_still_serving(ws)


async def test_bad_request_does_not_disturb_a_task_in_flight(system: System) -> None:
    async with client(system.url) as ws:
        ack = await ws.request({"type": "factorial", "number": 300, "id": "kept"})
        await ws.send("not json")
        await ws.send({"type": "square"})
        replies = [await ws.recv() for _ in range(3)]
    assert {"type": "error", "result": "JSON decode error"} in replies
    assert {"type": "error", "result": "Unknown task"} in replies
    assert {
        "type": "success",
        "task_id": ack["task_id"],
        "result": math.factorial(300),
        "id": "kept",
    } in replies


async def test_id_is_echoed_on_the_ack_the_success_and_errors(system: System) -> None:
    async with client(system.url) as ws:
        ack = await ws.request({"type": "factorial", "number": 5, "id": "job-1"})
        result = await ws.recv()
        assert ack == {"type": "result", "task_id": ack["task_id"], "id": "job-1"}
        assert result == {"type": "success", "task_id": ack["task_id"], "result": 120, "id": "job-1"}
        assert await ws.request({"type": "square", "id": 42}) == {
            "type": "error",
            "result": "Unknown task",
            "id": 42,
        }
        assert await ws.request({"type": "factorial", "number": -3, "id": 0}) == {
            "type": "error",
            "result": "Invalid request: 'number' must not be negative",
            "id": 0,
        }


# --- routing --------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "task_name"), [(1000, "factorial_soft"), (1001, "factorial_hard")])
async def test_number_is_routed_to_its_task_and_queue(system: System, number: int, task_name: str) -> None:
    async with client(system.url) as ws:
        ack, result = await ws.factorial(number)
    assert result["result"] == math.factorial(number)
    worker = system.workers[0]
    line = f"Task factorial_ws.{task_name}[{ack['task_id']}] received"
    wait_until(lambda: line in worker.log(), 15 * UNIT_S, what=line)


# --- lookups --------------------------------------------------------------------------------


async def test_lookup_of_a_finished_task_is_the_same_success(system: System) -> None:
    async with client(system.url) as ws:
        ack, result = await ws.factorial(25)
    async with client(system.url) as other:
        looked_up = await other.request({"type": "result", "task_id": ack["task_id"]})
        with_id = await other.request({"type": "result", "task_id": ack["task_id"], "id": "again"})
    assert looked_up == result == {"type": "success", "task_id": ack["task_id"], "result": math.factorial(25)}
    assert with_id == {**result, "id": "again"}


async def test_lookup_of_an_unknown_id_is_an_error_not_a_wait(system: System) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    async with client(system.url) as ws:
        reply = await ws.request({"type": "result", "task_id": unknown, "id": 9}, timeout_s=5 * UNIT_S)
        assert reply == {"type": "error", "result": "Unknown task id", "task_id": unknown, "id": 9}
        await assert_still_serving(ws)


async def test_lookup_of_a_pending_task_says_pending_then_pushes_the_result(
    launch: Launcher, redis_server: RedisServer
) -> None:
    # A worker for the soft queue only: the hard task stays queued until the hard worker starts.
    launch.worker(redis_server.url, queues="soft", name="soft")
    _, url = launch.gateway(redis_server.url)
    async with client(url) as submitter, client(url) as looker:
        ack = await submitter.request({"type": "factorial", "number": 1500})
        task_id = ack["task_id"]
        assert await looker.request({"type": "result", "task_id": task_id, "id": "p"}) == {
            "type": "pending",
            "task_id": task_id,
            "id": "p",
        }
        launch.worker(redis_server.url, queues="hard", name="hard")
        expected = {"type": "success", "task_id": task_id, "result": math.factorial(1500)}
        assert await looker.recv(timeout_s=30 * UNIT_S) == {**expected, "id": "p"}
        assert await submitter.recv(timeout_s=30 * UNIT_S) == expected


# --- many requests, exact results -----------------------------------------------------------


async def test_200_pipelined_requests_on_one_connection_all_come_back_right(system: System) -> None:
    # Both queues; 5 hard numbers, within the 8 unfinished hard tasks a client address may have.
    numbers = [1000 + index if index % 40 == 0 else index for index in range(200)]
    async with client(system.url) as ws:
        for index, number in enumerate(numbers):
            await ws.send({"type": "factorial", "number": number, "id": index})
        replies = [await ws.recv(timeout_s=60 * UNIT_S) for _ in range(2 * len(numbers))]
    acks = [reply for reply in replies if reply["type"] == "result"]
    results = {reply["task_id"]: reply for reply in replies if reply["type"] == "success"}
    assert [ack["id"] for ack in acks] == list(range(200))  # acks come in request order
    assert len({ack["task_id"] for ack in acks}) == 200
    assert len(results) == 200
    for ack in acks:
        result = results[ack["task_id"]]
        assert result["id"] == ack["id"]
        assert result["result"] == math.factorial(numbers[ack["id"]])


@pytest.mark.parametrize("number", [0, 1, 20, 1000, 1001, 5000, 100_000])
async def test_result_is_exact(system: System, number: int) -> None:
    async with client(system.url) as ws:
        ack = await ws.request({"type": "factorial", "number": number})
        reply = await ws.recv(timeout_s=30 * UNIT_S, keep_ints_as_text=True)
    assert reply == {"type": "success", "task_id": ack["task_id"], "result": str(gmpy2.fac(number).digits())}


async def test_factorial_of_max_number_is_exact_end_to_end(system: System) -> None:
    started = time.monotonic()
    async with client(system.url) as ws:
        ack = await ws.request({"type": "factorial", "number": NUMBER_MAX})
        reply = await ws.recv(timeout_s=60 * UNIT_S, keep_ints_as_text=True)
    elapsed_s = time.monotonic() - started
    assert is_task_id(ack["task_id"]) and reply["task_id"] == ack["task_id"]
    digits = reply["result"]
    # Known facts about 1000000!, independent of GMP: its length and its trailing zeros.
    assert len(digits) == 5_565_709
    assert len(digits) - len(digits.rstrip("0")) == 249_998
    assert digits == str(gmpy2.fac(NUMBER_MAX).digits())
    print(f"1000000! end to end in {elapsed_s:.1f} s")
