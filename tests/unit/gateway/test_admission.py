"""Admission: a few requests at a time talk to Redis; the others wait their turn, in order, and
one that waits too long is told the server is busy."""

from __future__ import annotations

import asyncio

import pytest

from factorial_ws.gateway.admission import Admission, ServerBusy


async def test_requests_beyond_the_slots_wait_their_turn_in_order() -> None:
    admission = Admission(2, wait_s=10)
    order: list[int] = []

    async def request(index: int) -> None:
        async with admission.turn():
            order.append(index)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(request(index) for index in range(6)))
    assert order == list(range(6))


async def test_a_request_that_gets_no_turn_in_time_is_told_the_server_is_busy() -> None:
    admission = Admission(1, wait_s=0.05)
    async with admission.turn():
        with pytest.raises(ServerBusy):
            async with admission.turn():
                pass
    async with admission.turn():  # the slot is free again, and the refused wait took none
        pass


async def entered(admission: Admission) -> bool:
    """Whether a new request gets its turn without waiting: a free slot is taken in the same
    step, a wait never ends within one turn of the loop."""
    entering = asyncio.ensure_future(admission.__aenter__())
    await asyncio.sleep(0)
    if entering.done():
        return True
    entering.cancel()
    await asyncio.gather(entering, return_exceptions=True)
    return False


async def test_a_waiter_cancelled_just_as_it_is_handed_the_slot_gives_it_back() -> None:
    admission = Admission(1, wait_s=10)
    await admission.__aenter__()  # the one slot taken
    waiting = asyncio.ensure_future(admission.__aenter__())
    await asyncio.sleep(0)  # it waits for the slot
    await admission.__aexit__(None, None, None)  # the slot is handed to the waiter...
    waiting.cancel()  # ...whose connection closes before it could run
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await entered(admission)  # the slot was given back, not lost with the waiter


async def test_a_waiter_cancelled_before_its_turn_takes_no_slot_and_the_next_one_gets_it() -> None:
    admission = Admission(1, wait_s=10)
    await admission.__aenter__()
    cancelled = asyncio.ensure_future(admission.__aenter__())
    kept = asyncio.ensure_future(admission.__aenter__())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    await admission.__aexit__(None, None, None)
    await asyncio.sleep(0)
    assert kept.done() and kept.exception() is None  # the slot skipped the cancelled waiter
    assert not await entered(admission)  # and is held by the one it went to: no slot made up
    await admission.__aexit__(None, None, None)
    assert await entered(admission)


async def test_a_request_that_fails_inside_its_turn_frees_the_slot() -> None:
    admission = Admission(1, wait_s=10)
    with pytest.raises(RuntimeError):
        async with admission.turn():
            raise RuntimeError("Redis went away")
    assert await entered(admission)
