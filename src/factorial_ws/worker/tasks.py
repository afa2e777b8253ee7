"""The two factorial tasks (soft and hard queue, each with its time limit) and the count of
starts that stops a task whose worker keeps dying.

A task goes back to its queue marked "redelivered" both when its worker dies and when a worker
shutting down hands it back; only the first counts. A worker shutting down marks the tasks it
holds (``mark_handed_back``), and the next start of a marked task uses the mark up instead.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import gmpy2
import redis
from celery import Celery, Task

from ..config import Config
from ..constants import ATTEMPTS_KEY_PREFIX, HANDED_BACK_KEY_PREFIX, HARD_TASK_NAME, SOFT_TASK_NAME
from ..redis_clients import sync_client

logger = logging.getLogger(__name__)

RESULT_REPR_MAX_CHARS = 24  # of a result in the worker's log line


class AttemptsExhausted(Exception):
    """The task was started max_task_attempts times and its worker died every time."""


def factorial_digits(number: int) -> str:
    """n! in decimal. GMP does both the product and the conversion in about n log n time;
    CPython's int-to-str is quadratic (and refused past 4300 digits)."""
    if number < 0:
        raise ValueError("factorial of a negative number")
    return str(gmpy2.fac(number).digits())


def register_tasks(app: Celery, config: Config) -> None:
    limits = {
        SOFT_TASK_NAME: config.soft_task_timeout_s,
        HARD_TASK_NAME: config.hard_task_timeout_s,
    }
    for name, time_limit in limits.items():

        def run(task: Task[Any, Any], number: int) -> str:
            _count_attempt(task, config)
            if not 0 <= number <= config.max_number:
                raise ValueError(f"number out of range: {number}")
            return factorial_digits(number)

        # The hard time limit is enforced by the prefork pool killing the process: GMP runs in
        # C, where a soft limit (a Python exception) would never be raised.
        # The worker logs "succeeded in ...: <result repr>"; cut it short so a factorial's
        # digits never fill the log (Celery's default keeps 1024 characters).
        # (celery-types says int; Celery takes float seconds)
        # shared=False: a shared task would be added to every app created later in this
        # process, and win over that app's own task, with the first app's config and limits.
        app.task(  # type: ignore[call-overload]
            name=name,
            shared=False,
            bind=True,
            time_limit=time_limit,
            acks_late=True,
            resultrepr_maxsize=RESULT_REPR_MAX_CHARS,
        )(run)


_redis_clients: dict[Config, redis.Redis] = {}


def process_client(config: Config) -> redis.Redis:
    """One client per process (pool children are forked, so created lazily after the fork)."""
    if config not in _redis_clients:
        _redis_clients[config] = sync_client(config)
    return _redis_clients[config]


def _count_attempt(task: Task[Any, Any], config: Config) -> None:
    """Redelivered tasks count their starts; past max_task_attempts the task fails for good.
    A first delivery costs nothing, so the common path makes no extra Redis call."""
    if not (task.request.delivery_info or {}).get("redelivered"):
        return
    client = process_client(config)
    if client.delete(HANDED_BACK_KEY_PREFIX + str(task.request.id)):
        return  # handed back by a worker shutting down: its worker did not die
    key = ATTEMPTS_KEY_PREFIX + str(task.request.id)
    pipe = client.pipeline()
    pipe.incr(key)
    pipe.expire(key, config.result_expires_s)
    redeliveries = int(pipe.execute()[0])
    if redeliveries + 1 > config.max_task_attempts:
        raise AttemptsExhausted(f"started {redeliveries + 1} times")


def mark_handed_back(config: Config, task_ids: Collection[str]) -> None:
    """Called by a worker shutting down for the tasks it holds, which go back to their queue
    (at once, or after the visibility timeout if it is then killed): their next start is not an
    attempt. The mark lasts until long after that next start can come."""
    if not task_ids:
        return
    expires_s = config.visibility_timeout_s + config.result_expires_s
    try:
        with sync_client(config, socket_timeout=2, socket_connect_timeout=2) as client:
            pipe = client.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.set(HANDED_BACK_KEY_PREFIX + task_id, 1, ex=expires_s)
            pipe.execute()
    except redis.RedisError as exc:
        # Then their next start counts as an attempt, as it did before the mark existed.
        logger.warning("could not mark %d tasks as handed back: %s", len(task_ids), exc)
