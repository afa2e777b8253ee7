"""Batching: the Redis commands of one event-loop turn go in one round trip, and each caller
still gets its own answer, its own error, or the batch's error when Redis went away."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import redis.asyncio as aioredis
from celery import Celery

from factorial_ws.gateway.batching import Batcher
from factorial_ws.gateway.messages import Envelopes, task_envelope
from factorial_ws.gateway.producer import Accepted, Producer
from factorial_ws.supervisor.redis_server import RedisServer
from support import UNIT_S


class Recorder:
    """A batch function that records its batches and answers each item with its double, or
    with the error an item asks for."""

    def __init__(self, *, fail_batch: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_batch = fail_batch

    async def run(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        await asyncio.sleep(0)  # a round trip
        if self.fail_batch is not None:
            raise self.fail_batch
        return [ValueError(f"item {item}") if item < 0 else item * 2 for item in items]


async def test_a_call_alone_is_a_batch_of_one_and_gets_its_answer() -> None:
    recorder = Recorder()
    assert await Batcher(recorder.run).call(21) == 42
    assert recorder.batches == [[21]]


async def test_the_calls_of_one_turn_share_a_batch_in_order_and_a_later_turn_makes_another() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run)
    assert await asyncio.gather(*(batcher.call(item) for item in range(5))) == [0, 2, 4, 6, 8]
    assert await batcher.call(7) == 14
    assert recorder.batches == [[0, 1, 2, 3, 4], [7]]


async def test_a_turn_larger_than_a_batch_is_split_and_every_call_answered() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_batch=3)
    assert await asyncio.gather(*(batcher.call(item) for item in range(7))) == [i * 2 for i in range(7)]
    assert recorder.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failing_command_fails_its_caller_alone() -> None:
    batcher = Batcher(Recorder().run)
    answers = await asyncio.gather(batcher.call(1), batcher.call(-1), batcher.call(3), return_exceptions=True)
    assert answers[0] == 2 and answers[2] == 6
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "item -1"


async def test_a_batch_that_fails_fails_every_caller_of_it_and_the_next_batch_runs() -> None:
    recorder = Recorder(fail_batch=ConnectionError("gone"))
    batcher = Batcher(recorder.run)
    answers = await asyncio.gather(*(batcher.call(item) for item in range(3)), return_exceptions=True)
    assert all(isinstance(answer, ConnectionError) for answer in answers)
    recorder.fail_batch = None
    assert await batcher.call(5) == 10


async def test_a_caller_cancelled_before_its_turn_sends_nothing() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run)
    cancelled = asyncio.ensure_future(batcher.call(1))
    kept = asyncio.ensure_future(batcher.call(2))
    await asyncio.sleep(0)  # both queued
    cancelled.cancel()
    assert await kept == 4
    assert recorder.batches == [[2]]


class Gated:
    """A batch function held at its round trip until the test opens the gate: the test acts on
    the callers of a batch in flight, then lets the batch answer, or fail."""

    def __init__(self) -> None:
        self.gate: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.batches: list[list[int]] = []

    async def run(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        failure = await self.gate
        if failure is not None:
            raise failure
        return [item * 2 for item in items]


async def batch_in_flight(batcher: Batcher[int, int], items: list[int]) -> list[asyncio.Future[int]]:
    """The calls of ``items``, sent as one batch that is now in flight."""
    calls: list[asyncio.Future[int]] = [asyncio.ensure_future(batcher.call(item)) for item in items]
    for _ in range(3):  # queued, flushed, the batch's task running
        await asyncio.sleep(0)
    assert batcher.in_flight == 1
    return calls


async def batch_ended(batcher: Batcher[int, int]) -> None:
    """Let the loop run until the batch in flight has ended, a few turns at most."""
    for _ in range(10):
        if not batcher.in_flight:
            return
        await asyncio.sleep(0)
    raise AssertionError("the batch did not end")


async def test_a_caller_cancelled_while_its_batch_fails_leaves_the_others_their_error() -> None:
    gated = Gated()
    batcher = Batcher(gated.run)
    first, second, third = await batch_in_flight(batcher, [1, 2, 3])
    first.cancel()  # its connection closed while the batch was in flight
    await asyncio.sleep(0)
    gated.gate.set_result(ConnectionError("gone"))
    await batch_ended(batcher)
    assert first.cancelled()
    for call in (second, third):
        assert call.done(), "a caller after the cancelled one was never answered"
        assert isinstance(call.exception(), ConnectionError)


async def test_a_caller_cancelled_while_its_batch_succeeds_leaves_the_others_their_answer() -> None:
    gated = Gated()
    batcher = Batcher(gated.run)
    first, second, third = await batch_in_flight(batcher, [1, 2, 3])
    second.cancel()
    await asyncio.sleep(0)
    gated.gate.set_result(None)
    await batch_ended(batcher)
    assert second.cancelled()
    assert first.done() and first.result() == 2
    assert third.done() and third.result() == 6


async def test_closing_the_batcher_cancels_the_callers_of_the_batches_in_flight() -> None:
    gated = Gated()
    batcher = Batcher(gated.run)
    calls = await batch_in_flight(batcher, [1, 2])
    await batcher.close()
    await asyncio.sleep(0)
    assert all(call.cancelled() for call in calls)
    assert batcher.in_flight == 0


async def test_a_batch_with_the_wrong_number_of_answers_fails_each_caller() -> None:
    async def short(items: list[int]) -> list[int | BaseException]:
        return [*items[:-1]]

    batcher = Batcher(short)
    answers = await asyncio.gather(batcher.call(1), batcher.call(2), return_exceptions=True)
    assert [type(answer) for answer in answers] == [RuntimeError, RuntimeError]


# --- the producer's batches, on a real Redis -----------------------------------------------------


def new_id() -> str:
    return str(uuid.uuid4())


async def test_submissions_of_one_turn_go_in_one_batch_and_each_gets_its_task(
    app: Celery, client: aioredis.Redis
) -> None:
    producer = Producer(app, client, result_expires_s=600)
    ids = [new_id() for _ in range(20)]
    accepted = await asyncio.gather(*(producer.submit(task_id, "soft", 5, "h") for task_id in ids))
    assert accepted == [Accepted(task_id, "created") for task_id in ids]
    queued = [json.loads(message)["headers"]["id"] for message in await client.lrange("soft", 0, -1)]
    assert sorted(queued) == sorted(ids)


async def test_a_failing_script_call_fails_its_request_alone(app: Celery, client: aioredis.Redis) -> None:
    await client.set("hard", "not a list")  # the LPUSH of a hard task fails inside the script
    producer = Producer(app, client, result_expires_s=600)
    soft_id, hard_id = new_id(), new_id()
    soft, hard = await asyncio.gather(
        producer.submit(soft_id, "soft", 5, "h"),
        producer.submit(hard_id, "hard", 5000, "h"),
        return_exceptions=True,
    )
    assert soft == Accepted(soft_id, "created")
    assert isinstance(hard, aioredis.ResponseError) and "WRONGTYPE" in str(hard)


async def test_a_script_flushed_from_redis_is_loaded_again(app: Celery, client: aioredis.Redis) -> None:
    producer = Producer(app, client, result_expires_s=600)
    await producer.submit(new_id(), "soft", 5, "h")
    await client.script_flush()  # as after a restart or a failover
    task_id = new_id()
    assert await producer.submit(task_id, "soft", 5, "h") == Accepted(task_id, "created")


async def test_a_batch_interrupted_by_a_redis_disconnect_fails_every_request_of_it(
    app: Celery, redis_server: RedisServer
) -> None:
    async with (
        aioredis.Redis.from_url(redis_server.url) as client,
        aioredis.Redis.from_url(redis_server.url) as other,
    ):
        producer = Producer(app, client, result_expires_s=600)
        await producer.submit(new_id(), "soft", 5, "h")  # the script is loaded, the pool warm
        # Redis is made to hold the batch's replies, then dies with the batch in flight.
        sleeping = asyncio.ensure_future(other.eval(BUSY_FOR_2_S, 0))
        await asyncio.sleep(0.2 * UNIT_S)
        batch = asyncio.gather(
            *(producer.submit(new_id(), "soft", 5, "h") for _ in range(10)), return_exceptions=True
        )
        await asyncio.sleep(0.2 * UNIT_S)
        redis_server.stop(signal.SIGKILL)
        answers = await asyncio.wait_for(batch, 10 * UNIT_S)
        sleeping.cancel()
        await asyncio.gather(sleeping, return_exceptions=True)
    assert len(answers) == 10
    assert all(isinstance(answer, aioredis.ConnectionError | OSError) for answer in answers), answers


# A script that holds Redis for two seconds (DEBUG SLEEP is off in a default Redis 7).
BUSY_FOR_2_S = """
local start = redis.call('TIME')
repeat local now = redis.call('TIME') until (now[1] - start[1]) * 1e6 + (now[2] - start[2]) > 2e6
"""


def test_envelopes_from_the_template_are_celerys_own(app: Celery) -> None:
    for expires_s in (None, 600.0):
        for queue, number in (("soft", 5), ("hard", 123456)):
            for progress, client_host in ((False, ""), (True, "127.0.0.2"), (False, "::1")):
                made = json.loads(
                    Envelopes(app, expires_s).make("abc-1", queue, number, progress, client_host)
                )
                built = json.loads(
                    task_envelope(
                        app,
                        "abc-1",
                        queue,
                        number,
                        expires_s=expires_s,
                        progress=progress,
                        client_host=client_host,
                    )
                )
                for envelope in (made, built):
                    assert envelope["properties"].pop("delivery_tag")
                    expires = envelope["headers"].pop("expires")
                    assert (expires is None) == (expires_s is None)
                assert made == built
