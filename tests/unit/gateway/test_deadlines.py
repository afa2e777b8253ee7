"""Deadlines: waits whose deadlines fall in the same second share one timer."""

from __future__ import annotations

import asyncio
from typing import Any

from factorial_ws.gateway.deadlines import Deadlines
from support import UNIT_S, until

# A deadline fires up to a second late, by design: waits for one get that second, and some slack.
FIRED_WITHIN_S = 1 + UNIT_S


async def test_a_wait_still_running_at_its_deadline_gets_the_value_within_a_second() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    started = loop.time()
    deadlines.expire(future, 0.2, "timed out")
    assert await asyncio.wait_for(future, 0.2 + FIRED_WITHIN_S) == "timed out"
    assert 0.2 <= loop.time() - started <= 1 + 0.3 * UNIT_S


async def test_waits_that_ended_first_keep_their_own_end_and_the_others_of_the_second_get_the_value(
    loop_errors: list[dict[str, Any]],
) -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    cancelled: asyncio.Future[str] = loop.create_future()
    answered: asyncio.Future[str] = loop.create_future()
    still_waiting: asyncio.Future[str] = loop.create_future()
    for future in (cancelled, answered, still_waiting):  # in this order, so the last ones are
        deadlines.expire(future, 0.0, "timed out")  # in the same bucket or a later one
    cancelled.cancel()  # its request went away
    answered.set_result("done")

    await until(lambda: len(deadlines) == 0, FIRED_WITHIN_S)  # every timer fired and let go of its waits
    assert cancelled.cancelled()
    assert answered.result() == "done"
    assert still_waiting.done() and still_waiting.result() == "timed out"
    assert loop_errors == []


async def test_deadlines_of_one_second_share_one_timer() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[int]] = [loop.create_future() for _ in range(100)]
    for future in futures:
        deadlines.expire(future, 30, 0)
    assert len(deadlines) == 100
    assert len(deadlines._buckets) <= 2
