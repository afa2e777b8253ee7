"""The result hub's catch-up after its subscription drops, against a private, real Redis: a
result stored while the hub was away from its channels is delivered by the read it makes once
subscribed again. (test_resubscribe.py times the same with 10,000 waiting tasks.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from factorial_ws.gateway.results import ResultHub, Watch
from factorial_ws.gateway.stored_tasks import result_key
from factorial_ws.protocol import Success, new_task_id
from factorial_ws.supervisor.redis_server import RedisServer
from factorial_ws.worker.result_backend import note_channel
from support import UNIT_S, until

STEP_TIMEOUT_S = 5 * UNIT_S
RESTORED = "result subscription restored"


@contextlib.asynccontextmanager
async def running_hub(
    redis_server: RedisServer, *, pubsub_user: str | None = None
) -> AsyncIterator[ResultHub]:
    """A hub wired as the gateway wires it: pooled commands, and one pub/sub connection (as
    ``pubsub_user``, if given), connected."""
    async with (
        aioredis.Redis.from_url(redis_server.url) as client,
        aioredis.Redis.from_url(redis_server.url, username=pubsub_user) as pubsub_client,
    ):
        hub = ResultHub(client, pubsub_client)
        await hub.start()
        try:
            assert await hub.wait_connected(STEP_TIMEOUT_S)
            yield hub
        finally:
            await hub.close()


@pytest.fixture
async def hub(redis_server: RedisServer) -> AsyncIterator[ResultHub]:
    async with running_hub(redis_server) as hub:
        yield hub


def success_meta(digits: str) -> str:
    return json.dumps({"status": "SUCCESS", "result": digits, "task_id": None})


async def published(client: aioredis.Redis, watch: Watch, digits: str) -> None:
    """A worker's end of the task: its meta stored and announced on its channel."""
    meta = success_meta(digits)
    await client.set(result_key(watch.task_id), meta)
    await client.publish(note_channel(watch.task_id), meta)


async def test_a_result_whose_note_was_missed_is_delivered_once_the_subscription_is_back(
    hub: ResultHub, client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="factorial_ws.gateway.results")
    stored, unfinished, marker = [await hub.subscribe(new_task_id()) for _ in range(3)]

    # A result stored whose note the hub never hears, as when the note goes out while the
    # subscription is down (stored first, so that no reconnection can come before it).
    await client.set(result_key(stored.task_id), success_meta("120"))
    killed = await client.client_kill_filter(_type="pubsub")
    await until(lambda: RESTORED in caplog.text, STEP_TIMEOUT_S, f"the log line {RESTORED!r}")

    # Subscribed again; a note published now is read only after the catch-up read is over.
    await published(client, marker, "6")
    assert await asyncio.wait_for(marker.outcome, STEP_TIMEOUT_S) == Success("6")
    assert killed == 1
    assert stored.outcome.done(), "the result stored during the drop was not caught up"
    assert stored.outcome.result() == Success("120")
    assert not unfinished.outcome.done()  # nothing stored: still waiting...

    await published(client, unfinished, "24")  # ...and subscribed again
    assert await asyncio.wait_for(unfinished.outcome, STEP_TIMEOUT_S) == Success("24")
    assert hub.connected
    for watch in (stored, unfinished, marker):
        await hub.release(watch)
    assert hub.waiting == 0


async def test_a_result_published_while_the_subscription_is_down_is_delivered_once_it_is_back(
    redis_server: RedisServer, client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # The hub subscribes as a user of its own, which the test disables to keep it out: its
    # subscription stays down, provably, for as long as the test wants.
    await client.acl_setuser(
        "hub", enabled=True, nopass=True, categories=["+@all"], keys=["*"], channels=["*"]
    )
    caplog.set_level(logging.INFO, logger="factorial_ws.gateway.results")
    async with running_hub(redis_server, pubsub_user="hub") as hub:
        missed, marker = [await hub.subscribe(new_task_id()) for _ in range(2)]
        await client.acl_setuser("hub", enabled=False)  # its open connection stays...
        assert await client.client_kill_filter(_type="pubsub") == 1  # ...until killed
        await until(lambda: not hub.connected, STEP_TIMEOUT_S, "the hub to see its subscription drop")

        await published(client, missed, "120")  # stored and announced: nobody hears it
        await asyncio.sleep(0.05)  # a reconnection attempt or two fail meanwhile
        assert not hub.connected and not missed.outcome.done()

        await client.acl_setuser("hub", enabled=True)
        await until(lambda: RESTORED in caplog.text, STEP_TIMEOUT_S, f"the log line {RESTORED!r}")
        # A note published now is read only after the catch-up read is over.
        await published(client, marker, "6")
        assert await asyncio.wait_for(marker.outcome, STEP_TIMEOUT_S) == Success("6")
        assert missed.outcome.done(), "the result published during the drop was not caught up"
        assert missed.outcome.result() == Success("120")
