"""A worker's ``CancelledTasks`` step against a real Redis: it loads every cancelled task at start,
then at each reload the entries added since, with an overlap for gateways whose clocks lag."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import redis
from celery import signals
from celery.worker import state

from factorial_ws.config import Config
from factorial_ws.constants import CANCELLED_KEY, CANCELLED_RELOAD_S
from factorial_ws.supervisor.redis_server import RedisServer
from factorial_ws.worker.hooks import CancelledTasks


@dataclass
class Timer:
    """The consumer's timer: records what it is asked to repeat; the test calls it."""

    repeated: list[tuple[float, Callable[[], None]]] = field(default_factory=list)
    once: list[float] = field(default_factory=list)  # the delays of what it is asked to call once

    def call_repeatedly(self, interval_s: float, function: Callable[[], None]) -> Timer:
        self.repeated.append((interval_s, function))
        return self

    def call_after(self, delay_s: float, function: Callable[[], None]) -> Timer:
        self.once.append(delay_s)
        return self

    def cancel(self) -> None:
        pass


@dataclass
class Consumer:
    timer: Timer = field(default_factory=Timer)


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url) as client:
        yield client


@pytest.fixture
def consumer() -> Consumer:
    return Consumer()


@pytest.fixture
def start_worker(redis_server: RedisServer, consumer: Consumer) -> Iterator[Callable[[], Callable[[], None]]]:
    """Starts the step as a worker's consumer does (its first load), and returns its reload,
    which the consumer's timer would call every CANCELLED_RELOAD_S. Celery's process-wide set
    of revoked ids is emptied for the test and restored after it."""
    saved = list(state.revoked)
    state.revoked.clear()

    class Step(CancelledTasks):
        worker_config = Config(redis_url=redis_server.url)

    step = Step(parent=None)

    def start() -> Callable[[], None]:
        step.start(consumer)
        [(interval_s, reload)] = consumer.timer.repeated
        assert interval_s == CANCELLED_RELOAD_S
        return reload

    yield start
    step.stop(consumer)
    state.revoked.clear()
    state.revoked.update(saved)


def cancel(client: redis.Redis, task_id: str, at_s: float) -> None:
    """What a gateway writes when a client cancels ``task_id``, by that gateway's clock."""
    client.zadd(CANCELLED_KEY, {task_id: at_s})


def test_a_worker_loads_every_cancel_at_start_then_each_new_one_even_from_a_lagging_clock(
    client: redis.Redis, start_worker: Callable[[], Callable[[], None]]
) -> None:
    now_s = time.time()
    cancel(client, "long-ago", now_s - 3600)
    cancel(client, "first", now_s)

    reload = start_worker()
    assert {"long-ago", "first"} <= set(state.revoked)

    # A cancel through a gateway whose clock lags, within the overlap; another one later.
    cancel(client, "from-a-lagging-clock", now_s - CancelledTasks._OVERLAP_S / 2)
    cancel(client, "later", now_s + CANCELLED_RELOAD_S)
    reload()
    assert "from-a-lagging-clock" in state.revoked, "a cancel from a lagging clock was missed"
    assert "later" in state.revoked

    cancel(client, "even-later", now_s + 2 * CANCELLED_RELOAD_S)
    reload()
    assert "even-later" in state.revoked


def test_a_worker_that_cannot_read_the_cancels_reads_them_at_the_next_reload(
    client: redis.Redis, start_worker: Callable[[], Callable[[], None]]
) -> None:
    reload = start_worker()
    cancel(client, "while-unread", time.time())
    client.rename(CANCELLED_KEY, "elsewhere")
    client.set(CANCELLED_KEY, "not a sorted set")  # the read fails, as when Redis is away
    reload()
    assert "while-unread" not in state.revoked
    client.delete(CANCELLED_KEY)
    client.rename("elsewhere", CANCELLED_KEY)
    reload()
    assert "while-unread" in state.revoked


def test_a_pool_process_killed_for_a_cancel_gets_the_pool_checked_again_soon(
    start_worker: Callable[[], Callable[[], None]], consumer: Consumer
) -> None:
    start_worker()
    timer = consumer.timer
    signals.task_revoked.send(sender=None, terminated=False)  # dropped unrun: no process died
    assert timer.once == []
    signals.task_revoked.send(sender=None, terminated=True)
    assert timer.once == list(CancelledTasks._REPLACE_AFTER_S)
