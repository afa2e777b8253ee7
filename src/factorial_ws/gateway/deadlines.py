"""Deadlines for thousands of waiting requests, at one timer a second.

A waiting request gives up after HARD_TASK_TIMEOUT. ``asyncio.timeout`` per request costs a timer
in the loop's heap and its cancellation on every request, a measurable share of a small request's
CPU; and a deadline of a minute does not need a millisecond's precision. So requests whose
deadlines fall in the same second share one timer, which ends the waits still running with
``Failure(Timeout error)``: what a wait that ran out is answered with.
"""

from __future__ import annotations

import asyncio
import math
from typing import TypeVar

T = TypeVar("T")


class Deadlines:
    def __init__(self) -> None:
        self._buckets: dict[int, list[tuple[asyncio.Future[object], object]]] = {}

    def expire(self, future: asyncio.Future[T], after_s: float, value: T) -> None:
        """Resolve ``future`` with ``value`` once ``after_s`` seconds have passed (up to a second
        later), unless it is done by then."""
        loop = asyncio.get_running_loop()
        second = math.ceil(loop.time() + after_s)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = []
            loop.call_at(second, self._expire, second)
        bucket.append((future, value))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def _expire(self, second: int) -> None:
        for future, value in self._buckets.pop(second, ()):
            if not future.done():
                future.set_result(value)
