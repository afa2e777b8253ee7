"""Abuse held, end to end: frame size and encoding, per-connection limits, the connection cap,
keepalive pings, and the soft queue kept fast while the hard pool grinds.

Every test talks WebSocket (or raw TCP) to a real gateway process over real Redis; the limits are
set small through the same environment variables an operator uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from factorial_ws.constants import HARD_QUEUE, RATE_LIMITED, SOFT_QUEUE, TOO_MANY_IN_FLIGHT
from factorial_ws.gateway.conversation import BINARY_FRAME
from factorial_ws.supervisor.redis_server import RedisServer
from factorial_ws.worker.processes import WORKER_APP
from peers import Client, client, raw_websocket
from support import UNIT_S, Launcher, Proc, System, wait_until

# The tests that time the system (a token bucket's refill, a ping's deadline, a latency) are
# marked `alone`: other tests beside them would skew what they measure.
CLOSE_TIMEOUT_S = 15 * UNIT_S


@pytest.fixture(scope="module")
def quiet_redis(module_launch: Launcher) -> RedisServer:
    """A Redis with no worker: tasks sent to it stay in flight until a test starts one."""
    return module_launch.redis(persistent=False)


async def closed_with(ws: Client) -> int | None:
    """The close code the gateway sent, once it has closed the connection."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.connection.recv(), CLOSE_TIMEOUT_S)
    return closed.value.rcvd.code if closed.value.rcvd else None


async def assert_untouched(url: str) -> None:
    async with client(url) as other:
        reply = await other.request({"type": "result", "task_id": str(uuid.uuid4())})
    assert reply["type"] == "error" and reply["result"] == "Unknown task id"


def cheap_request(request_id: int) -> dict[str, Any]:
    """A request answered at once, in order, without Redis: an unknown type."""
    return {"type": "nothing", "id": request_id}


# --- frames ---------------------------------------------------------------------------------


async def test_frame_over_64_kib_closes_that_connection_with_1009_and_only_that_one(
    system: System,
) -> None:
    async with client(system.url) as bystander, client(system.url) as sender:
        # Exactly at the default limit is still a frame like any other: it gets its reply.
        at_limit = json.dumps({"type": "factorial", "number": 5, "pad": "x" * (64 * 1024 - 45)})
        assert len(at_limit.encode()) == 64 * 1024
        ack = await sender.request(at_limit)
        assert ack["type"] == "result"
        assert (await sender.recv())["result"] == 120

        await sender.send("x" * (64 * 1024 + 1))
        assert await closed_with(sender) == 1009

        ack, result = await bystander.factorial(5)
        assert result == {"type": "success", "task_id": ack["task_id"], "result": 120}


async def test_frame_size_limit_is_configurable(launch: Launcher, quiet_redis: RedisServer) -> None:
    url = launch.in_process_gateway(quiet_redis.url, WS_MAX_MESSAGE_BYTES=1024)
    async with client(url) as ws:
        reply = await ws.request("x" * 1024)
        assert reply["result"] == "JSON decode error"
        await ws.send("x" * 1025)
        assert await closed_with(ws) == 1009
    async with client(url) as ws:
        await ws.send(b"\x00" * 1025)
        assert await closed_with(ws) == 1009
    await assert_untouched(url)


async def test_invalid_utf8_in_a_text_frame_closes_that_connection_with_1007(system: System) -> None:
    async with client(system.url) as bystander, client(system.url) as sender:
        # text=True sends the bytes as a text frame as they are, unchecked.
        await sender.connection.send(b'{"type": "factorial", "number": 5, "x": "\xff\xfe"}', text=True)
        assert await closed_with(sender) == 1007

        ack, result = await bystander.factorial(5)
        assert result == {"type": "success", "task_id": ack["task_id"], "result": 120}


# --- per-connection limits ------------------------------------------------------------------


@pytest.mark.alone
async def test_requests_past_the_burst_are_refused_until_tokens_refill(
    launch: Launcher, quiet_redis: RedisServer
) -> None:
    url = launch.in_process_gateway(quiet_redis.url, WS_RATE_LIMIT=0.5, WS_RATE_BURST=5)
    async with client(url) as flooder, client(url) as neighbour:
        for request_id in range(10):
            await flooder.send(cheap_request(request_id))
        replies = [await flooder.recv() for _ in range(10)]
        assert replies[:5] == [{"type": "error", "result": "Unknown task", "id": i} for i in range(5)]
        refused = [r for r in replies[5:] if r["result"] == RATE_LIMITED]
        assert len(refused) >= 3, replies  # at most a token or two refilled meanwhile
        assert all(r["type"] == "error" for r in refused)

        # The limit is per connection: another client is not held back.
        for request_id in range(5):
            reply = await neighbour.request(cheap_request(request_id))
            assert reply["result"] == "Unknown task"

        # Refused requests spend nothing: one comes through as soon as a token is back.
        deadline = time.monotonic() + 10 * UNIT_S
        while (await flooder.request(cheap_request(99)))["result"] == RATE_LIMITED:
            assert time.monotonic() < deadline, "the bucket never refilled"
            await asyncio.sleep(0.2)


@pytest.mark.alone
async def test_binary_and_malformed_frames_spend_tokens_too(
    launch: Launcher, quiet_redis: RedisServer
) -> None:
    url = launch.in_process_gateway(quiet_redis.url, WS_RATE_LIMIT=0.2, WS_RATE_BURST=3)
    async with client(url) as flooder:
        for _ in range(4):
            await flooder.send(b"\x01\x02")
        for _ in range(4):
            await flooder.send("{not json")
        replies = [(await flooder.recv())["result"] for _ in range(8)]
    assert replies[:3] == [BINARY_FRAME] * 3
    assert replies.count(RATE_LIMITED) >= 4, replies


async def test_tasks_in_flight_past_the_limit_are_refused_until_results_arrive(
    launch: Launcher, quiet_redis: RedisServer
) -> None:
    url = launch.in_process_gateway(quiet_redis.url, WS_MAX_TASKS_IN_FLIGHT=2)
    async with client(url) as ws, client(url) as neighbour:
        first = await ws.request({"type": "factorial", "number": 5, "id": 1})
        second = await ws.request({"type": "factorial", "number": 6, "id": 2})
        assert first["type"] == second["type"] == "result"
        refused = await ws.request({"type": "factorial", "number": 7, "id": 3})
        assert refused == {"type": "error", "result": TOO_MANY_IN_FLIGHT, "id": 3}
        # A lookup waits like a task does, so it counts too; its reply names the task.
        refused = await ws.request({"type": "result", "task_id": first["task_id"], "id": 4})
        assert refused == {
            "type": "error",
            "result": TOO_MANY_IN_FLIGHT,
            "task_id": first["task_id"],
            "id": 4,
        }
        # The limit is per connection.
        assert (await neighbour.request({"type": "factorial", "number": 3}))["type"] == "result"

        launch.worker(quiet_redis.url, concurrency=1)
        results = [await ws.recv() for _ in range(2)]
        assert {(r["id"], r["result"]) for r in results} == {(1, 120), (2, 720)}
        # Both answered: the connection may have two in flight again.
        ack = await ws.request({"type": "factorial", "number": 5, "id": 5})
        assert ack["type"] == "result"
        assert await ws.recv() == {"type": "success", "task_id": ack["task_id"], "result": 120, "id": 5}
        assert (await neighbour.recv())["result"] == 6


async def test_connections_past_the_cap_are_refused_with_503(
    launch: Launcher, quiet_redis: RedisServer
) -> None:
    url = launch.in_process_gateway(quiet_redis.url, WS_MAX_CONNECTIONS=3)
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(client(url)) for _ in range(3)]
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == 503

        await held[0].connection.close()
        for ws in held[1:]:  # the ones within the cap still work
            reply = await ws.request({"type": "result", "task_id": str(uuid.uuid4())})
            assert reply["result"] == "Unknown task id"

        # The slot freed by the close is taken by the next client.
        async def admitted() -> bool:
            try:
                await stack.enter_async_context(client(url))
            except InvalidStatus:
                return False
            return True

        deadline = time.monotonic() + 10 * UNIT_S
        while not await admitted():
            assert time.monotonic() < deadline, "a closed connection's slot was never freed"
            await asyncio.sleep(0.1)


# --- keepalive ------------------------------------------------------------------------------


@pytest.mark.alone
async def test_keepalive_pings_drop_a_peer_that_never_answers(
    launch: Launcher, quiet_redis: RedisServer
) -> None:
    url = launch.in_process_gateway(quiet_redis.url, WS_PING_INTERVAL=0.5, WS_PING_TIMEOUT=0.5)
    async with client(url) as live, raw_websocket(url) as peer:
        dead, head = peer.reader, peer.head
        assert head.startswith(b"HTTP/1.1 101")
        started = time.monotonic()
        received = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10 * UNIT_S):
                while chunk := await dead.read(4096):
                    received += chunk
        dropped_after_s = time.monotonic() - started
        assert dead.at_eof(), f"still connected after {dropped_after_s:.1f} s"
        assert received[:1] == b"\x89"  # it was pinged (opcode 9) before being dropped
        assert dropped_after_s < 5 * UNIT_S

        # A client that answers pings (websockets does it by itself) stays connected.
        reply = await live.request({"type": "result", "task_id": str(uuid.uuid4())})
        assert reply["result"] == "Unknown task id"


# --- isolation of the soft and hard pools ---------------------------------------------------


@pytest.fixture
def pools_as_up_runs_them(launch: Launcher, redis_server: RedisServer) -> str:
    """The worker pools `factorial-ws up` starts (one per queue, same app), a gateway, and hard
    tasks that a 3 s time limit cuts short so no huge result is ever stored. Every request is a
    task of its own (no RESULT_REUSE): a factorial(5) answered from the stored result of the
    first would measure no pool at all."""
    settings: dict[str, Any] = {
        "MAX_NUMBER": 10**7,
        "HARD_TASK_TIMEOUT": 3,
        "SOFT_TASK_TIMEOUT": 3,
        "RESULT_REUSE": 0,
    }

    def pool(queue: str) -> Callable[[], Proc]:
        # Killed at the end, as every worker: a warm shutdown would first finish its hard task.
        return functools.partial(
            launch.worker,
            redis_server.url,
            queues=queue,
            concurrency=1,
            name=f"{queue}-pool",
            app=WORKER_APP,
            **settings,
        )

    # The three start side by side. Four 10**7! (65.7 million digits each) from one address:
    # past an address's default budget, which this test is not about.
    url: str
    *_, (_, url) = launch.side_by_side(
        pool(SOFT_QUEUE),
        pool(HARD_QUEUE),
        lambda: launch.gateway(redis_server.url, HARD_QUEUE_DIGITS_PER_CLIENT=0, **settings),
    )
    return url


@pytest.mark.alone
async def test_factorial_of_5_stays_fast_while_the_hard_pool_is_saturated(
    pools_as_up_runs_them: str, redis_server: RedisServer
) -> None:
    url = pools_as_up_runs_them
    with redis.Redis.from_url(redis_server.url) as probe:
        async with client(url) as grinder, client(url) as small:
            await small.factorial(5)  # warm up the soft pool's first task
            for i in range(4):  # four numbers: the same one would be computed once
                await grinder.request({"type": "factorial", "number": 10**7 - i})
            # Once the hard pool has taken one, it is saturated: the rest wait behind it.
            await asyncio.to_thread(wait_until, lambda: probe.llen(HARD_QUEUE) < 4, what="a busy hard pool")
            latencies = []
            for _ in range(5):
                started = time.monotonic()
                ack, result = await small.factorial(5)
                latencies.append(time.monotonic() - started)
                assert result == {"type": "success", "task_id": ack["task_id"], "result": 120}
            assert probe.llen(HARD_QUEUE) >= 1, "the hard pool ran dry while we measured"
    assert statistics.median(latencies) < 1.0 * UNIT_S, latencies
