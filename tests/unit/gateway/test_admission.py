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
