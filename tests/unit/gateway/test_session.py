"""One connection's session driven frame by frame, without a socket: a stand-in connection hands
it the client's frames and collects its replies, while everything behind it (the producer, the
result hub, the canceller) is the gateway's own, on a private, real Redis. No worker runs: a task
stays queued until the test stores its result through Celery's result backend, as a worker does.

conversation.py's unit tests prove what each frame makes; these prove what the session does with
it: the order of replies, a result pushed when it is stored, a cancel ending the waits first, and
a client that leaves."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from celery.app.task import Context
from websockets.asyncio.server import ServerConnection

from factorial_ws.catalog import load_catalog
from factorial_ws.config import Config
from factorial_ws.constants import SOFT_QUEUE, TASK_CANCELLED, TOO_MANY_IN_FLIGHT
from factorial_ws.gateway.memory import MemoryGauge
from factorial_ws.gateway.results import ResultHub
from factorial_ws.gateway.server import shared_services
from factorial_ws.gateway.session import Services, Session
from factorial_ws.supervisor.redis_server import RedisServer
from factorial_ws.worker.app import create_app
from support import UNIT_S, until

STEP_TIMEOUT_S = 5 * UNIT_S


class StandInConnection:
    """What a session uses of websockets' ``ServerConnection``: frames in, messages out."""

    remote_address = ("127.0.0.2", 40000)
    # Flow control says "wait": the outbox then sends each message with ``send()`` rather than
    # writing websockets' protocol buffers itself, the one path that needs no socket.
    paused = True

    def __init__(self) -> None:
        self._frames: asyncio.Queue[str | None] = asyncio.Queue()
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def client_sends(self, *messages: dict[str, Any] | str) -> None:
        for message in messages:
            self._frames.put_nowait(message if isinstance(message, str) else json.dumps(message))

    def client_leaves(self) -> None:
        self._frames.put_nowait(None)

    async def reply(self) -> dict[str, Any]:
        return await asyncio.wait_for(self._replies.get(), STEP_TIMEOUT_S)

    def unread_replies(self) -> int:
        return self._replies.qsize()

    def __aiter__(self) -> StandInConnection:
        return self

    async def __anext__(self) -> str:
        frame = await self._frames.get()
        if frame is None:
            raise StopAsyncIteration
        return frame

    async def send(self, message: str | Iterable[str] | AsyncIterable[str], text: bool | None = None) -> None:
        if isinstance(message, str):
            whole = message
        elif isinstance(message, AsyncIterable):  # a big result, in fragments
            whole = "".join([fragment async for fragment in message])
        else:
            whole = "".join(message)
        self._replies.put_nowait(json.loads(whole))


@contextlib.asynccontextmanager
async def gateway_services(config: Config) -> AsyncIterator[Services]:
    """The services one gateway process gives its sessions (``shared_services``), its hub
    connected."""
    async with (
        aioredis.Redis.from_url(config.redis_url) as client,
        aioredis.Redis.from_url(config.redis_url) as pubsub_client,
    ):
        catalog = load_catalog(config)
        hub = ResultHub(
            client, pubsub_client, catalog=catalog, task_error_messages=config.task_error_messages
        )
        await hub.start()
        memory = MemoryGauge(client, config.redis_memory_high_water)
        services = shared_services(config, client, hub, memory, catalog)
        try:
            assert await hub.wait_connected(STEP_TIMEOUT_S)
            yield services
        finally:
            services.canceller.close()
            await hub.close()


@contextlib.asynccontextmanager
async def session(services: Services) -> AsyncIterator[StandInConnection]:
    """A session on a stand-in connection, running until the test ends (its client leaves)."""
    connection = StandInConnection()
    running = asyncio.create_task(Session(cast(ServerConnection, connection), services).run())
    try:
        yield connection
    finally:
        connection.client_leaves()
        await asyncio.wait_for(running, STEP_TIMEOUT_S)


@pytest.fixture
def config(redis_server: RedisServer) -> Config:
    return Config(redis_url=redis_server.url)


@pytest.fixture
async def services(config: Config) -> AsyncIterator[Services]:
    async with gateway_services(config) as services:
        yield services


def store_result_as_a_worker_does(config: Config, task_id: str, result: int) -> None:
    create_app(config).backend.store_result(task_id, str(result), "SUCCESS", request=Context({}))


async def test_an_error_for_a_later_frame_waits_for_the_ack_of_an_earlier_submission(
    services: Services,
) -> None:
    async with session(services) as connection:
        # The ack needs Redis; the error needs nothing, and still comes second.
        connection.client_sends({"type": "factorial", "number": 5}, "not json")
        ack = await connection.reply()
        assert ack["type"] == "result" and "task_id" in ack, ack
        error = await connection.reply()
        assert error["type"] == "error", error


async def test_a_stored_result_is_pushed_to_the_request_that_created_the_task(
    config: Config, services: Services
) -> None:
    async with session(services) as connection:
        connection.client_sends({"type": "factorial", "number": 5})
        task_id = (await connection.reply())["task_id"]
        await asyncio.to_thread(store_result_as_a_worker_does, config, task_id, 120)
        assert await connection.reply() == {"type": "success", "task_id": task_id, "result": 120}


async def test_a_cancel_by_the_creator_ends_its_waiting_request_before_the_cancel_reply(
    services: Services,
) -> None:
    async with session(services) as connection:
        connection.client_sends({"type": "factorial", "number": 9})
        task_id = (await connection.reply())["task_id"]
        connection.client_sends({"type": "cancel", "task_id": task_id})
        assert await connection.reply() == {"type": "error", "result": TASK_CANCELLED, "task_id": task_id}
        assert await connection.reply() == {"type": "cancelled", "task_id": task_id}
        assert services.hub.local_waiters(task_id) == 0


async def test_a_joiners_cancel_ends_its_own_wait_and_the_creator_still_gets_the_result(
    config: Config, services: Services
) -> None:
    async with session(services) as creator, session(services) as joiner:
        creator.client_sends({"type": "factorial", "number": 21})
        task_id = (await creator.reply())["task_id"]
        joiner.client_sends({"type": "factorial", "number": 21})
        assert (await joiner.reply())["task_id"] == task_id  # one computation for both
        joiner.client_sends({"type": "cancel", "task_id": task_id})
        # Not revoked (the creator waits): only the joiner's wait ends, before its cancel reply.
        assert await joiner.reply() == {"type": "error", "result": TASK_CANCELLED, "task_id": task_id}
        assert await joiner.reply() == {"type": "cancelled", "task_id": task_id}
        await asyncio.to_thread(store_result_as_a_worker_does, config, task_id, 51090942171709440000)
        assert await creator.reply() == {
            "type": "success",
            "task_id": task_id,
            "result": 51090942171709440000,
        }
        assert joiner.unread_replies() == 0


async def test_a_request_past_the_in_flight_cap_is_refused_while_the_first_waits(
    redis_server: RedisServer,
) -> None:
    config = Config(redis_url=redis_server.url, max_tasks_in_flight=1)
    async with gateway_services(config) as services, session(services) as connection:
        connection.client_sends({"type": "factorial", "number": 11})
        first = await connection.reply()
        assert first["type"] == "result", first
        connection.client_sends({"type": "factorial", "number": 12})
        assert await connection.reply() == {"type": "error", "result": TOO_MANY_IN_FLIGHT}
        assert connection.unread_replies() == 0


async def test_a_client_that_submits_and_leaves_still_gets_its_task_queued_and_its_wait_ends(
    config: Config, services: Services
) -> None:
    connection = StandInConnection()
    connection.client_sends({"type": "factorial", "number": 13})
    connection.client_leaves()  # before the submission can have reached Redis
    await asyncio.wait_for(Session(cast(ServerConnection, connection), services).run(), STEP_TIMEOUT_S)
    async with aioredis.Redis.from_url(config.redis_url) as redis:
        await until(lambda: redis.llen(SOFT_QUEUE), STEP_TIMEOUT_S, "the task of a client that left queued")
    # Acked to nobody: nothing stays subscribed for it.
    await until(lambda: not services.hub.waiting, STEP_TIMEOUT_S, "the hub to let go of the task")
