"""The workers' side of progress and cancel, seen from Redis with real workers and no gateway: a
task message that asks for progress gets Celery's STARTED state stored and published (one that does
not ask costs nothing: its channel sees only the result), and a task cancelled in Redis is never
run, even by a worker that was not running when it was cancelled."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest
import redis
from celery import Celery

from factorial_ws.config import Config
from factorial_ws.constants import CANCELLED_KEY, CANCELLED_RELOAD_S, RESULT_KEY_PREFIX
from factorial_ws.gateway.messages import task_envelope
from factorial_ws.protocol import new_task_id
from factorial_ws.worker.app import create_app
from support import REPLY_TIMEOUT_S, UNIT_S, Launcher, Proc, wait_until


@pytest.fixture(scope="module")
def app() -> Celery:
    return create_app(Config())


def push(redis_url: str, app: Celery, number: int, *, progress: bool = False) -> str:
    task_id = new_task_id()
    with redis.Redis.from_url(redis_url) as r:
        r.lpush("hard", task_envelope(app, task_id, "hard", number, progress=progress))
    return task_id


def published_states(redis_url: str, app: Celery, number: int, *, progress: bool) -> list[str]:
    """Send one task; every state published on its result channel, up to the final one."""
    task_id = new_task_id()
    with redis.Redis.from_url(redis_url) as r, r.pubsub() as pubsub:
        pubsub.subscribe(RESULT_KEY_PREFIX + task_id)
        pubsub.get_message(timeout=REPLY_TIMEOUT_S)  # the confirmation
        r.lpush("hard", task_envelope(app, task_id, "hard", number, progress=progress))
        states: list[str] = []
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while not states or states[-1] == "STARTED":
            assert time.monotonic() < deadline, states
            message = pubsub.get_message(timeout=1)
            if message is not None and message["type"] == "message":
                states.append(json.loads(message["data"])["status"])
    return states


def final_state(redis_url: str, task_id: str) -> str | None:
    with redis.Redis.from_url(redis_url) as r:
        meta = r.get(RESULT_KEY_PREFIX + task_id)
    return None if meta is None else str(json.loads(meta)["status"])


def cancel_in_redis(redis_url: str, task_id: str) -> None:
    """What a gateway records before it broadcasts a revoke (and all a worker that missed the
    broadcast can learn from)."""
    with redis.Redis.from_url(redis_url) as r:
        r.zadd(CANCELLED_KEY, {task_id: time.time()})


def assert_discarded_unrun(worker: Proc, task_id: str) -> None:
    log = worker.log()
    assert f"Discarding revoked task: factorial_ws.factorial_hard[{task_id}]" in log
    assert f"[{task_id}] succeeded" not in log


def wait_for_a_reload(redis_url: str, timeout_s: float) -> None:
    """Return once Redis has run a worker's read of the cancelled tasks (in its MONITOR output,
    which starts after every command sent before this call), or after ``timeout_s`` without one."""
    deadline = time.monotonic() + timeout_s
    with redis.Redis.from_url(redis_url, socket_timeout=timeout_s) as r, r.monitor() as monitor:
        while time.monotonic() < deadline:
            try:
                command = monitor.next_command()["command"]
            except redis.TimeoutError:  # Redis ran nothing at all for that long
                return
            if command.startswith(f"ZRANGEBYSCORE {CANCELLED_KEY} "):
                return


@dataclass(frozen=True)
class LateWorker:
    """The module's Redis and its one hard worker, started after a task was cancelled in Redis
    (``cancelled``; ``after`` was queued behind it)."""

    redis_url: str
    worker: Proc
    cancelled: str
    after: str


@pytest.fixture(scope="module")
def late_worker(module_launch: Launcher, app: Celery) -> LateWorker:
    """One worker start for the module, and the first test's subject: it comes after a task was
    cancelled. Sharing it is safe: each test follows task ids of its own (their published states,
    stored states and log lines), and pushes only tasks that end."""
    redis_url = module_launch.redis().url
    cancelled = push(redis_url, app, 3000)
    after = push(redis_url, app, 3001)
    cancel_in_redis(redis_url, cancelled)  # no worker runs: nobody hears a broadcast
    worker = module_launch.worker(redis_url, queues="hard", concurrency=1)
    return LateWorker(redis_url, worker, cancelled, after)


def test_a_task_that_asks_for_progress_publishes_started_before_its_result(
    late_worker: LateWorker, app: Celery
) -> None:
    assert published_states(late_worker.redis_url, app, 2000, progress=True) == ["STARTED", "SUCCESS"]


def test_a_task_that_does_not_ask_publishes_only_its_result(late_worker: LateWorker, app: Celery) -> None:
    assert published_states(late_worker.redis_url, app, 2000, progress=False) == ["SUCCESS"]


def test_a_worker_started_after_a_cancel_discards_the_task_unrun(late_worker: LateWorker) -> None:
    redis_url, after, cancelled = late_worker.redis_url, late_worker.after, late_worker.cancelled

    wait_until(lambda: final_state(redis_url, after) == "SUCCESS", what="the task after the cancelled one")
    assert_discarded_unrun(late_worker.worker, cancelled)
    assert final_state(redis_url, cancelled) == "REVOKED"


def test_a_running_worker_learns_of_a_cancel_it_did_not_hear_within_its_reload_interval(
    late_worker: LateWorker, app: Celery
) -> None:
    redis_url, worker = late_worker.redis_url, late_worker.worker
    task_id = new_task_id()
    cancel_in_redis(redis_url, task_id)  # recorded, never broadcast
    # Within its reload interval (and a second), the worker reads the cancelled tasks again, after
    # the cancel was recorded; the task pushed then is one it knows to be cancelled.
    wait_for_a_reload(redis_url, CANCELLED_RELOAD_S + 1 * UNIT_S)

    with redis.Redis.from_url(redis_url) as r:
        r.lpush("hard", task_envelope(app, task_id, "hard", 3000))
    after = push(redis_url, app, 3001)

    wait_until(lambda: final_state(redis_url, after) == "SUCCESS", what="the task after the cancelled one")
    assert_discarded_unrun(worker, task_id)
