"""The references the gateway is measured against: a raw Celery client with the very settings
of the gateway and workers (for a catalog task, a plain one sending it by name), and bare gmpy2."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import gmpy2
from celery import Celery
from celery.result import AsyncResult, ResultSet

from ..config import Config
from ..constants import HARD_TASK_NAME, SOFT_TASK_NAME
from ..worker.app import create_app
from .catalog_task import CountWords
from .gauges import Rate, rate_of, timed
from .load import REPLY_TIMEOUT_S, SMALL, SMALL_RESULT


def raw_app(config: Config, redis_url: str) -> Celery:
    """A Celery client with the very settings the workers and gateway use."""
    return create_app(config.replace(redis_url=redis_url))


def raw_latency(app: Celery, count: int) -> list[float]:
    """``task.delay(5).get()`` one after another; milliseconds each."""
    task = app.tasks[SOFT_TASK_NAME]
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        result = task.delay(SMALL).get(timeout=REPLY_TIMEOUT_S)
        samples.append((time.perf_counter() - started) * 1000)
        if result != SMALL_RESULT:
            raise RuntimeError(f"raw Celery returned {result!r}")
    return samples


def raw_throughput(app: Celery, count: int) -> Rate:
    """Submit ``count`` tasks, then collect every result; tasks per second, and this process's
    CPU time (the raw client runs in it)."""
    task = app.tasks[SOFT_TASK_NAME]
    with timed(time.process_time) as timing:
        results: list[AsyncResult[Any]] = [task.delay(SMALL) for _ in range(count)]
        values = ResultSet(results).join(timeout=REPLY_TIMEOUT_S)
    if any(value != SMALL_RESULT for value in values):
        raise RuntimeError("raw Celery returned a wrong result")
    for result in results:
        result.forget()
    return rate_of(count, timing)


def raw_call_latency(app: Celery, calls: CountWords, count: int) -> list[float]:
    """The catalog task by name, ``send_task(...).get()`` (``apply_async`` by name) one after
    another, with the kwargs and queue the gateway would send; milliseconds each."""
    samples = []
    for _ in range(count):
        text, expected = calls.request()
        started = time.perf_counter()
        result = app.send_task(calls.celery_task, kwargs={"text": text}, queue=calls.queue)
        value = result.get(timeout=REPLY_TIMEOUT_S)
        samples.append((time.perf_counter() - started) * 1000)
        if value != expected:
            raise RuntimeError(f"raw Celery returned {value!r}")
    return samples


def raw_call_throughput(app: Celery, calls: CountWords, count: int) -> Rate:
    """``count`` catalog tasks sent by name, then every result collected, as ``raw_throughput``
    does for factorial(5); tasks per second, and this process's CPU time."""
    requests = [calls.request() for _ in range(count)]  # the texts made before the clock
    with timed(time.process_time) as timing:
        results: list[AsyncResult[Any]] = [
            app.send_task(calls.celery_task, kwargs={"text": text}, queue=calls.queue) for text, _ in requests
        ]
        values = ResultSet(results).join(timeout=REPLY_TIMEOUT_S)
    if values != [expected for _, expected in requests]:
        raise RuntimeError("raw Celery returned a wrong result")
    for result in results:
        result.forget()
    return rate_of(count, timing)


def raw_submissions(app: Celery, count: int) -> Rate:
    """``task.delay(5)`` ``count`` times, with no worker to run them: submissions per second,
    and this process's CPU time."""
    task = app.tasks[SOFT_TASK_NAME]
    with timed(time.process_time) as timing:
        for _ in range(count):
            task.delay(SMALL)
    return rate_of(count, timing)


def raw_lookups(app: Celery, stored: Sequence[tuple[str, int]], count: int) -> Rate:
    """``AsyncResult(id).get()`` of stored results, ``count`` times in turn over ``stored``:
    lookups per second, this process's CPU time, and wrong results as errors. Celery's backend
    keeps the results it has read in a cache; it is emptied before each pass over ``stored``,
    so that every lookup reads Redis, as the gateway's do."""
    errors = 0
    with timed(time.process_time) as timing:
        for i in range(count):
            if i % len(stored) == 0:
                cast(Any, app.backend)._cache.clear()  # not in Celery's type stubs
            task_id, expected = stored[i % len(stored)]
            errors += int(AsyncResult(task_id, app=app).get(timeout=REPLY_TIMEOUT_S)) != expected
    return rate_of(count, timing, errors)


def raw_hard(app: Celery, number: int) -> AsyncResult[Any]:
    return app.tasks[HARD_TASK_NAME].delay(number)


def bare_gmpy2(number: int) -> tuple[float, str]:
    """gmpy2's factorial and its decimal digits, timed alone in this process."""
    started = time.perf_counter()
    digits = str(gmpy2.fac(number).digits())
    return time.perf_counter() - started, digits
