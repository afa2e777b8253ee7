"""The submission script's budgets against a real Redis: the hard queue and each client address
may hold so much work, counted in its cost (the digits of n!), from submission until a worker has
taken the task out of the queue; past the queue's budget an address below its fair share is still
admitted; an address that made Redis store too many result bytes is refused alone.

A worker is played by hand, as kombu's Redis transport does it: it takes a task by popping the
right end of the queue (BRPOP), and stores what Celery stores (the STARTED state of a task asked
with progress, the REVOKED state of a cancelled one)."""

from __future__ import annotations

import json
import time

import pytest
import redis
import redis.asyncio as aioredis
from celery import Celery

from factorial_ws.config import Config
from factorial_ws.constants import (
    CLIENT_BUSY,
    CLIENT_STORED_TOO_MUCH,
    HARD_QUEUE,
    HARD_QUEUE_FULL,
    RESULT_KEY_PREFIX,
    STORED_BYTES_KEY_PREFIX,
)
from factorial_ws.gateway.producer import Accepted, Producer, Refused, Rules
from factorial_ws.protocol import new_task_id
from factorial_ws.supervisor.redis_server import RedisServer
from factorial_ws.worker.result_backend import stored_bucket_s

VICTIM = "127.0.0.99"


def producer_for(app: Celery, client: aioredis.Redis, **env: object) -> Producer:
    """A producer with the gateway's rules for these settings (by environment variable)."""
    config = Config.from_env({name: str(value) for name, value in env.items()})
    return Producer(app, client, config.result_expires_s, rules=Rules.from_config(config))


async def ask(
    producer: Producer, numbers: list[int], address: str, *, progress: bool = False
) -> list[Accepted | Refused]:
    return [
        await producer.submit(new_task_id(), "hard", number, address, progress=progress) for number in numbers
    ]


async def ask_until_refused(
    producer: Producer, number: int, address: str, *, progress: bool = False, at_most: int = 40
) -> list[Accepted]:
    """Ask for ``number`` again and again (result reuse off: a task each time) until refused."""
    accepted: list[Accepted] = []
    for _ in range(at_most):
        answer = await producer.submit(new_task_id(), "hard", number, address, progress=progress)
        if isinstance(answer, Refused):
            return accepted
        accepted.append(answer)
    raise AssertionError(f"{at_most} tasks accepted from {address}, never refused")


@pytest.fixture
def sync(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def worker_takes(sync: redis.Redis, count: int, *, progress: bool = False) -> list[str]:
    """What a worker does when it takes the oldest ``count`` tasks: pop them (kombu's BRPOP); with
    progress, store their STARTED state. Their ids."""
    ids = []
    for _ in range(count):
        message = sync.rpop(HARD_QUEUE)
        assert isinstance(message, bytes)
        task_id = json.loads(message)["headers"]["id"]
        if progress:
            meta = {"status": "STARTED", "result": {"pid": 1}, "task_id": task_id}
            sync.set(RESULT_KEY_PREFIX + task_id, json.dumps(meta))
        ids.append(task_id)
    return ids


# --- cost, not tasks ------------------------------------------------------------------------


async def test_one_address_may_queue_200_numbers_up_to_3000_under_the_default_budgets(
    app: Celery, client: aioredis.Redis
) -> None:
    producer = producer_for(app, client)
    answers = await ask(producer, list(range(2801, 3001)), "127.0.0.2")  # the costliest 200
    refused = [answer for answer in answers if isinstance(answer, Refused)]
    assert not refused, f"{len(refused)} of 200 refused, the first with {refused[0].message!r}"


async def test_51_cheap_large_numbers_leave_the_hard_queue_open_to_everyone(
    app: Celery, client: aioredis.Redis
) -> None:
    producer = producer_for(app, client)
    for source in range(7):  # 7 addresses, 51 numbers just over 1000 in all
        first = 1001 + 8 * source
        await ask(producer, list(range(first, min(first + 8, 1052))), f"127.0.0.{source + 2}")
    answer = await producer.submit(new_task_id(), "hard", 5000, VICTIM)
    assert isinstance(answer, Accepted), answer


# --- fair share -------------------------------------------------------------------------------


async def test_past_the_queue_budget_an_address_below_its_fair_share_is_still_admitted(
    app: Celery, client: aioredis.Redis, sync: redis.Redis
) -> None:
    # A queue budget of about 50 numbers just over 1000; no budget of its own binds an address.
    producer = producer_for(app, client, HARD_QUEUE_MAX_DIGITS=130_000, HARD_QUEUE_DIGITS_PER_CLIENT=10**9)
    cheap = iter(range(1001, 2000))
    addresses = [f"127.0.0.{n}" for n in range(2, 12)]
    answers: list[Accepted | Refused] = []
    while not any(isinstance(answer, Refused) for answer in answers[-10:]):
        answers = answers + [await producer.submit(new_task_id(), "hard", next(cheap), a) for a in addresses]
        assert len(answers) < 200, "the queue's budget never refused anyone"
    queued = sync.llen(HARD_QUEUE)

    # The 10 addresses are each over their share of the full queue: refused. The victim, with
    # nothing queued, is below it: admitted.
    assert await producer.submit(new_task_id(), "hard", next(cheap), addresses[0]) == Refused(HARD_QUEUE_FULL)
    victim = await producer.submit(new_task_id(), "hard", 5000, VICTIM)
    assert isinstance(victim, Accepted), f"{victim} with {queued} cheap tasks queued"
    # Its share is a 1/11 of the budget (11800 digits), and 5000! has 16326: it has had its turn.
    assert await producer.submit(new_task_id(), "hard", 5001, VICTIM) == Refused(HARD_QUEUE_FULL)


# --- counted until a worker takes the task ----------------------------------------------------


@pytest.mark.parametrize("progress", [False, True])
async def test_a_task_counts_against_its_address_until_a_worker_takes_it_with_or_without_progress(
    app: Celery, client: aioredis.Redis, sync: redis.Redis, progress: bool
) -> None:
    producer = producer_for(app, client, RESULT_REUSE=0, HARD_QUEUE_DIGITS_PER_CLIENT=8 * 2568)
    address = "127.0.0.2"
    first = await ask_until_refused(producer, 2000, address, progress=progress)
    assert await ask(producer, [2000], address) == [Refused(CLIENT_BUSY)]
    worker_takes(sync, 2, progress=progress)  # running now, or done: either way out of the queue
    again = await ask_until_refused(producer, 2000, address, progress=progress)
    assert (len(first), len(again)) == (len(first), 2)


async def test_a_cancelled_task_counts_until_a_worker_discards_it(
    app: Celery, client: aioredis.Redis, sync: redis.Redis
) -> None:
    producer = producer_for(app, client, RESULT_REUSE=0, HARD_QUEUE_DIGITS_PER_CLIENT=8 * 2568)
    address = "127.0.0.2"
    queued = await ask_until_refused(producer, 2000, address)
    for accepted in queued:  # cancelled: the gateway stored REVOKED (no worker had answered)
        meta = {"status": "REVOKED", "result": {"exc_type": "TaskRevokedError"}, "task_id": accepted.task_id}
        sync.set(RESULT_KEY_PREFIX + accepted.task_id, json.dumps(meta))
    # Still in the queue, so still its address's: a submit-and-cancel loop cannot fill the queue.
    assert await ask(producer, [2000], address) == [Refused(CLIENT_BUSY)]
    assert sync.llen(HARD_QUEUE) == len(queued)
    worker_takes(sync, len(queued))  # and discards them, as revoked
    assert len(await ask_until_refused(producer, 2000, address)) == len(queued)


# --- stored bytes -----------------------------------------------------------------------------


async def test_stored_bytes_count_over_their_retention_and_then_are_forgotten(
    app: Celery, client: aioredis.Redis, sync: redis.Redis
) -> None:
    producer = producer_for(app, client, RESULT_EXPIRES=3600, STORED_BYTES_PER_CLIENT=1_000_000)
    bucket_s = stored_bucket_s(3600)
    now_bucket = int(time.time() // bucket_s)
    key = STORED_BYTES_KEY_PREFIX + "127.0.0.2"
    # Stored over an hour ago (all expired by now): it no longer counts, and is dropped.
    sync.hset(key, str(now_bucket - 3600 // bucket_s - 2), 5_000_000)
    assert isinstance(await producer.submit(new_task_id(), "soft", 5, "127.0.0.2"), Accepted)
    assert sync.hkeys(key) == []
    # Stored within the hour: refused, soft numbers too; another address is not.
    sync.hset(key, str(now_bucket - 3600 // bucket_s + 1), 1_000_000)
    assert await producer.submit(new_task_id(), "soft", 6, "127.0.0.2") == Refused(CLIENT_STORED_TOO_MUCH)
    assert isinstance(await producer.submit(new_task_id(), "soft", 6, "127.0.0.3"), Accepted)
    # A number computed (or being computed) already is still answered: it stores nothing new.
    reused = await producer.submit(new_task_id(), "soft", 6, "127.0.0.2")
    assert isinstance(reused, Accepted) and reused.state == "pending"
