"""Requests read ahead reply in request order, and reading waits past the read-ahead."""

from __future__ import annotations

import asyncio
from typing import Any

from factorial_ws.gateway.order import ReplyOrder
from support import UNIT_S

STEP_TIMEOUT_S = UNIT_S


async def test_replies_go_in_turn_order_whatever_order_the_work_ends_in() -> None:
    order = ReplyOrder(read_ahead=10)
    sent: list[int] = []

    async def request(index: int, work_s: float) -> None:
        turn = order.next_turn()
        try:
            await asyncio.sleep(work_s)  # later requests finish their work first
            await turn.come()
            sent.append(index)
        finally:
            turn.end()

    await asyncio.gather(*(request(index, 0.05 - index * 0.01) for index in range(5)))
    assert sent == [0, 1, 2, 3, 4]
    assert order.unanswered == 0


async def test_a_request_that_fails_still_lets_the_next_one_reply() -> None:
    order = ReplyOrder(read_ahead=10)
    first, second = order.next_turn(), order.next_turn()
    assert first.now and not second.now
    first.end()  # the first request failed before its reply: its turn ends all the same
    await asyncio.wait_for(second.come(), STEP_TIMEOUT_S)
    second.end()


async def test_reading_waits_while_read_ahead_requests_are_unanswered() -> None:
    order = ReplyOrder(read_ahead=2)
    turns = [order.next_turn(), order.next_turn()]
    room = asyncio.ensure_future(order.room())
    await asyncio.sleep(0.01 * UNIT_S)
    assert not room.done()  # two unanswered: the next frame waits
    turns[0].end()
    await asyncio.wait_for(room, STEP_TIMEOUT_S)


async def test_a_cancelled_waiter_does_not_cancel_the_turn_before_it() -> None:
    order = ReplyOrder(read_ahead=10)
    first, second = order.next_turn(), order.next_turn()
    waiting = asyncio.ensure_future(second.come())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    third = order.next_turn()
    first.end()
    second.end()
    await asyncio.wait_for(third.come(), STEP_TIMEOUT_S)


async def test_a_cancelled_waiter_leaves_the_turn_before_it_unanswered() -> None:
    order = ReplyOrder(read_ahead=10)
    first, second = order.next_turn(), order.next_turn()
    waiting = asyncio.ensure_future(second.come())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not second.now  # the first request has not replied: the second still waits for it
    assert order.unanswered == 2
    first.end()
    await asyncio.sleep(0)  # the count is kept by a done callback
    assert second.now and order.unanswered == 1


async def test_a_turn_ended_twice_is_answered_once() -> None:
    order = ReplyOrder(read_ahead=10)
    turn = order.next_turn()
    turn.end()  # its reply sent...
    turn.end()  # ...and the request's cleanup ends it again
    await asyncio.sleep(0)
    assert order.unanswered == 0


async def test_turns_answered_in_one_step_let_reading_go_on_once(loop_errors: list[dict[str, Any]]) -> None:
    order = ReplyOrder(read_ahead=2)
    turns = [order.next_turn(), order.next_turn()]
    room = asyncio.ensure_future(order.room())
    await asyncio.sleep(0)
    for turn in turns:
        turn.end()
    await asyncio.wait_for(room, STEP_TIMEOUT_S)
    assert order.unanswered == 0
    assert loop_errors == []
