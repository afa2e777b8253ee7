"""Admission control of the hard queue, in cost (the digits of n!): a client address may have at
most HARD_QUEUE_DIGITS_PER_CLIENT of work queued (across all its connections, closed ones too),
the hard queue HARD_QUEUE_MAX_DIGITS in all, past which an address below its fair share is still
admitted; a task counts until a worker takes it out of the queue; and a queued task nobody can
wait for any more expires unrun (TASK_EXPIRES).

Clients come from several loopback addresses (127.0.0.2, 127.0.0.3...: Linux routes all of
127/8 to the loopback interface), so each is a client address of its own to the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Sequence

import redis

from factorial_ws.constants import CLIENT_BUSY, HARD_QUEUE, HARD_QUEUE_FULL, HARD_TASK_NAME
from peers import Client, client
from support import UNIT_S, Launcher, System, wait_until

from .fault_tools import LONG_NUMBER, http_get

# The cost of one LONG_NUMBER! (1000000!): its digits.
LONG_NUMBER_DIGITS = 5_565_709


def address(n: int) -> dict[str, object]:
    """Connection options that make a client come from 127.0.0.<n>."""
    return {"local_addr": (f"127.0.0.{n}", 0)}


@contextlib.asynccontextmanager
async def leaving(url: str, sources: Sequence[int | None]) -> AsyncIterator[list[Client]]:
    """A connection from each source address (None: the default) for a client that sends and
    never reads a reply. They close without waiting for the closing handshake, which could not
    complete behind the replies left unread (each would wait out its close timeout): close them
    once the gateway has answered every request."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                client(url, close_timeout=0, **(address(source) if source is not None else {}))
            )
            for source in sources
        ]


async def ask(url: str, numbers: list[int], source: int) -> list[dict[str, object]]:
    """Send ``factorial`` requests from 127.0.0.<source>, one after another; their first replies."""
    async with client(url, **address(source)) as ws:
        return [await ws.request({"type": "factorial", "number": n, "id": n}) for n in numbers]


async def test_hard_tasks_are_budgeted_by_cost_per_client_address_and_per_queue(launch: Launcher) -> None:
    server = launch.redis()
    launch.worker(server.url, queues="soft", concurrency=1)  # no hard worker: hard tasks stay queued
    # 1001! to 1007! have 18060 digits in all: an address may queue 8 numbers just over 1000; the
    # queue, about 10 of them.
    url = launch.in_process_gateway(
        server.url, RESULT_REUSE=0, HARD_QUEUE_DIGITS_PER_CLIENT=20_000, HARD_QUEUE_MAX_DIGITS=26_000
    )
    store = redis.Redis.from_url(server.url)

    # One address: 8 hard tasks, then refused, on this connection and on any later one.
    replies = await ask(url, list(range(1001, 1011)), source=2)
    assert [reply["type"] for reply in replies] == ["result"] * 8 + ["error"] * 2
    assert replies[8] == {"type": "error", "result": CLIENT_BUSY, "id": 1009}
    assert (await ask(url, [2000], source=2))[0]["result"] == CLIENT_BUSY
    # Soft tasks are not budgeted; another address is not affected: 3001! (9131 digits) fits the
    # queue's budget; past it, 3002! fits the address's fair share (half the budget, with two
    # addresses queueing); 3003! does not.
    async with client(url, **address(2)) as ws:
        assert (await ws.factorial(5))[1]["result"] == 120
    replies = await ask(url, [3001, 3002, 3003], source=3)
    assert [reply["type"] for reply in replies] == ["result", "result", "error"]
    assert replies[2] == {"type": "error", "result": HARD_QUEUE_FULL, "id": 3003}
    assert store.llen(HARD_QUEUE) == 10

    # Once a hard worker has taken the address's tasks out of the queue, it may queue again.
    launch.worker(server.url, queues="hard", concurrency=1)
    wait_until(lambda: store.llen(HARD_QUEUE) == 0, 30 * UNIT_S, "the hard queue to drain")
    async with client(url, **address(2)) as ws:
        ack, done = await ws.factorial(2000)
        assert done["type"] == "success" and done["task_id"] == ack["task_id"]


async def test_one_client_pipelining_200_numbers_up_to_3000_gets_all_200_results(system: System) -> None:
    numbers = random.Random(17).choices(range(3001), k=200)
    finals: dict[int, dict[str, object]] = {}  # by request id: its success or error
    async with client(system.url) as ws:
        for request_id, number in enumerate(numbers):
            await ws.send({"type": "factorial", "number": number, "id": request_id})
        while len(finals) < len(numbers):
            reply = await ws.recv(30 * UNIT_S)
            if reply["type"] != "result":  # an ack: its result follows
                finals[reply["id"]] = reply
    errors = [reply for reply in finals.values() if reply["type"] == "error"]
    print(f"200 pipelined numbers up to 3000: {len(finals) - len(errors)} results, {len(errors)} errors")
    assert not errors, f"{len(errors)} errors, the first: {errors[0]}"


async def test_four_connections_flooding_numbers_near_a_million_leave_at_most_100_queued(
    launch: Launcher,
) -> None:
    server = launch.redis(persistent=False)
    _, url = launch.gateway(server.url)  # the default budgets; no worker: nothing leaves the queue
    store = redis.Redis.from_url(server.url)

    async def flood(ws: Client, source: int) -> None:
        for i in range(256):
            await ws.send({"type": "factorial", "number": LONG_NUMBER - 256 * source - i})

    def every_frame_answered() -> bool:
        counts = metrics(url)
        return counts["submitted"] + counts[HARD_QUEUE_FULL] + counts[CLIENT_BUSY] == 4 * 256

    sources = [2, 3, 4, 5]
    async with leaving(url, sources) as connections:
        await asyncio.gather(*map(flood, connections, sources))
        wait_until(every_frame_answered, 30 * UNIT_S, "every request admitted or refused")
    # Closed without reading a single reply.
    queued = store.llen(HARD_QUEUE)
    print(f"after the flood of 4 x 256 numbers near 1000000: {queued} queued; {metrics(url)}")
    assert 0 < queued <= 100


async def test_addresses_asking_many_cheap_numbers_do_not_lock_another_address_out(
    launch: Launcher,
) -> None:
    server = launch.redis(persistent=False)  # no worker: hard tasks stay queued
    # A queue budget of about 50 numbers just over 1000, as the queue's length once was.
    url = launch.in_process_gateway(server.url, HARD_QUEUE_MAX_DIGITS=130_000)
    cheap = iter(range(1001, 3000))

    async def pipeline_cheap(source: int) -> None:
        async with client(url, **address(source)) as ws:
            for _ in range(10):
                await ws.send({"type": "factorial", "number": next(cheap)})
            for _ in range(10):
                await ws.recv()

    await asyncio.gather(*(pipeline_cheap(source) for source in range(2, 12)))
    # The victim, with nothing of its own queued, is below its share of the full queue.
    replies = await ask(url, [5000], source=99)
    assert replies[0]["type"] == "result", replies
    # The cheap addresses are over theirs.
    for source in range(2, 12):
        replies = await ask(url, [next(cheap)], source=source)
        assert replies[0]["result"] == HARD_QUEUE_FULL, (source, replies)


async def test_a_submit_and_cancel_loop_holds_no_more_than_its_addresss_budget(launch: Launcher) -> None:
    server = launch.redis(persistent=False)  # no worker: hard tasks stay queued
    url = launch.in_process_gateway(server.url, HARD_QUEUE_DIGITS_PER_CLIENT=8 * 2568)
    store = redis.Redis.from_url(server.url)
    answers: dict[str, int] = {"accepted": 0, CLIENT_BUSY: 0}
    async with client(url, **address(2)) as looper:
        for number in range(1001, 1061):
            ack = await looper.request({"type": "factorial", "number": number})
            if ack["type"] == "error":
                answers[ack["result"]] = answers.get(ack["result"], 0) + 1
                continue
            answers["accepted"] += 1
            await looper.send({"type": "cancel", "task_id": ack["task_id"]})
            # Its wait ends with "Task cancelled", and the cancel is answered.
            replies = [await looper.recv(), await looper.recv()]
            assert "cancelled" in {reply["type"] for reply in replies}, replies
    # Cancelled tasks stay in the queue until a worker discards them, and count until then.
    print(f"60 submit-and-cancel cycles: {answers}; {store.llen(HARD_QUEUE)} queued")
    assert answers == {"accepted": 8, CLIENT_BUSY: 52}
    assert store.llen(HARD_QUEUE) == 8
    replies = await ask(url, [5000], source=3)
    assert replies[0]["type"] == "result", replies


async def test_submit_and_leave_flood_leaves_a_bounded_queue_and_later_work_is_prompt(
    launch: Launcher,
) -> None:
    server = launch.redis()
    worker = launch.worker(server.url, concurrency=2)
    # Without reuse, as the flood was first seen: every request for 1000000! would be a task. The
    # budget per client address is 2 of them rather than the default 8, to spare the suite CPU.
    budget = 2
    _, url = launch.gateway(
        server.url, RESULT_REUSE=0, HARD_QUEUE_DIGITS_PER_CLIENT=budget * LONG_NUMBER_DIGITS
    )
    store = redis.Redis.from_url(server.url)
    frame = json.dumps({"type": "factorial", "number": LONG_NUMBER})
    deepest = 0

    async def flood(ws: Client) -> None:
        for _ in range(256):
            await ws.send(frame)

    def every_frame_answered() -> bool:
        nonlocal deepest
        deepest = max(deepest, store.llen(HARD_QUEUE))
        counts = metrics(url)
        return counts["submitted"] + counts[HARD_QUEUE_FULL] + counts[CLIENT_BUSY] == 4 * 256

    flooded = time.monotonic()
    async with leaving(url, [None] * 4) as connections:
        await asyncio.gather(*map(flood, connections))
        wait_until(every_frame_answered, 30 * UNIT_S, "every request admitted or refused")
    # Closed without reading a single reply.
    counts = metrics(url)
    ended = worker.log().count("succeeded in")
    print(f"after the flood: at most {deepest} queued; {ended} tasks ended meanwhile; {counts}")
    assert deepest <= budget
    # At most the budget queued at any time, and the 2 the worker holds: more tasks only as earlier
    # ones ended.
    assert counts["submitted"] <= budget + 2 + ended

    # The backlog is done well within 30 s; then a new client's 1001! is answered at once.
    wait_until(lambda: worker.log().count("succeeded in") >= counts["submitted"], 30 * UNIT_S, "the backlog")
    drained_s = time.monotonic() - flooded
    started = time.monotonic()
    async with client(url) as ws:
        ack, done = await ws.factorial(1001)
    answered_s = time.monotonic() - started
    print(f"backlog done {drained_s:.1f} s after the flood; 1001! then took {answered_s * 1000:.0f} ms")
    assert done["type"] == "success" and done["task_id"] == ack["task_id"]
    assert drained_s < 30 and answered_s < 2


def metrics(url: str) -> dict[str, float]:
    """Hard tasks this gateway sent, and its refusals by message, from GET /metrics."""
    found = {"submitted": 0.0, HARD_QUEUE_FULL: 0.0, CLIENT_BUSY: 0.0}
    for line in http_get(url, "/metrics").splitlines():
        if line.startswith('factorial_ws_tasks_submitted_total{queue="hard"}'):
            found["submitted"] = float(line.split()[-1])
        for message in (HARD_QUEUE_FULL, CLIENT_BUSY):
            if line.startswith(f'factorial_ws_errors_total{{message="{message}"}}'):
                found[message] = float(line.split()[-1])
    return found


async def test_a_task_queued_past_its_expiry_is_discarded_unrun_and_its_number_computed_again(
    launch: Launcher,
) -> None:
    server = launch.redis()  # no worker yet
    url = launch.in_process_gateway(server.url, TASK_EXPIRES=2)
    async with client(url) as ws:
        ack = await ws.request({"type": "factorial", "number": 1001})
        await asyncio.sleep(3)  # in the queue past its 2 s expiry
        hard = launch.worker(server.url, queues="hard", concurrency=1)
        done = await ws.recv()
    # The worker discarded it instead of computing it; its client hears that it timed out.
    assert done == {"type": "error", "result": "Timeout error", "task_id": ack["task_id"]}
    assert f"Discarding revoked task: {HARD_TASK_NAME}[{ack['task_id']}]" in hard.log()
    assert "succeeded in" not in hard.log()
    # The expired computation is forgotten: asking again computes the number.
    async with client(url) as ws:
        again, result = await ws.factorial(1001)
    assert again["task_id"] != ack["task_id"]
    assert result["type"] == "success" and result["task_id"] == again["task_id"]
