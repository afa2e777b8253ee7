"""Deadlines: waits whose deadlines fall in the same second share one timer."""

from __future__ import annotations

import asyncio

from factorial_ws.gateway.deadlines import Deadlines


async def test_a_wait_still_running_at_its_deadline_gets_the_value_within_a_second() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    started = loop.time()
    deadlines.expire(future, 0.2, "timed out")
    assert await asyncio.wait_for(future, 2) == "timed out"
    assert 0.2 <= loop.time() - started <= 1.3


async def test_a_wait_that_ended_first_keeps_its_own_result() -> None:
    deadlines = Deadlines()
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    deadlines.expire(future, 0.1, "timed out")
    future.set_result("done")
    await asyncio.sleep(1.2)
    assert future.result() == "done"
    assert len(deadlines) == 0  # its timer fired and let go of it


async def test_deadlines_of_one_second_share_one_timer() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[int]] = [loop.create_future() for _ in range(100)]
    for future in futures:
        deadlines.expire(future, 30, 0)
    assert len(deadlines) == 100
    assert len(deadlines._buckets) <= 2
