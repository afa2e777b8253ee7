"""The result hub's reconnection pace: a request cuts a long delay short, though never below the
shortest, and learns when the attempt it asked for ended."""

from __future__ import annotations

import asyncio

from factorial_ws.gateway.backoff import Backoff

SHORTEST_S = 0.05  # backoff.py's first delay
LONGEST_S = 2.0  # and its last


async def test_a_request_cuts_the_longest_delay_to_the_shortest() -> None:
    backoff = Backoff()
    loop = asyncio.get_running_loop()
    for _ in range(6):  # failures in a row, up to the longest delay; each cut short
        sleeping = asyncio.create_task(backoff.sleep())
        asking = asyncio.create_task(backoff.attempt_now())
        started = loop.time()
        await asyncio.wait_for(sleeping, LONGEST_S / 4)
        assert loop.time() - started >= SHORTEST_S * 0.9  # a flood of requests: no flood of attempts
        assert not asking.done()  # the request waits for the attempt itself...
        backoff.attempt_ended()
        await asyncio.wait_for(asking, SHORTEST_S)  # ...and no longer


async def test_a_connection_starts_the_next_losses_delays_from_the_shortest() -> None:
    backoff = Backoff()
    for _ in range(3):
        asking = asyncio.create_task(backoff.attempt_now())
        await backoff.sleep()
        backoff.attempt_ended()
        await asking
    backoff.reset()
    await asyncio.wait_for(backoff.sleep(), SHORTEST_S * 3)  # without a request to cut it short
