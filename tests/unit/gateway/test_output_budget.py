"""The process-wide budget of result bytes (``OutputBudget``): what it lets through at once,
what waits, and that a result several connections send counts once."""

from __future__ import annotations

import asyncio

from factorial_ws.gateway.outbox import OutputBudget
from support import UNIT_S

STEP_TIMEOUT_S = UNIT_S


async def test_a_result_waits_while_the_budget_is_full_and_goes_once_room_is_made() -> None:
    budget = OutputBudget(10)
    await budget.acquire(6)
    waiting = asyncio.create_task(budget.acquire(6))
    await asyncio.sleep(0)
    assert not waiting.done() and budget.in_use_bytes == 6
    budget.release(6)
    await asyncio.wait_for(waiting, STEP_TIMEOUT_S)
    assert budget.in_use_bytes == 6


async def test_a_result_larger_than_the_budget_goes_alone() -> None:
    budget = OutputBudget(10)
    await asyncio.wait_for(budget.acquire(25), STEP_TIMEOUT_S)
    assert budget.in_use_bytes == 25


async def test_a_shared_result_counts_once_for_every_connection_that_sends_it() -> None:
    budget = OutputBudget(10)
    for _ in range(5):
        await asyncio.wait_for(budget.acquire(8, "task-a"), STEP_TIMEOUT_S)
    assert budget.in_use_bytes == 8
    for _ in range(4):
        budget.release(8, "task-a")
    assert budget.in_use_bytes == 8  # one connection still sends it
    budget.release(8, "task-a")
    assert budget.in_use_bytes == 0


async def test_results_wait_in_the_order_they_asked() -> None:
    budget = OutputBudget(10)
    await budget.acquire(10)
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        await budget.acquire(size)
        order.append(name)

    big, small = asyncio.create_task(take("big", 8)), asyncio.create_task(take("small", 1))
    await asyncio.sleep(0)
    budget.release(10)
    await asyncio.wait_for(asyncio.gather(big, small), STEP_TIMEOUT_S)
    assert order == ["big", "small"]


async def test_a_cancelled_wait_takes_nothing() -> None:
    budget = OutputBudget(10)
    await budget.acquire(10)
    waiting = asyncio.create_task(budget.acquire(5))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.sleep(0)
    budget.release(10)
    assert budget.in_use_bytes == 0


async def turns() -> None:
    """A few turns of the loop: enough for every wait let in to have run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_wait_cancelled_just_as_it_is_let_in_gives_its_bytes_back() -> None:
    budget = OutputBudget(10)
    await budget.acquire(10)
    waiting = asyncio.create_task(budget.acquire(6))
    await asyncio.sleep(0)
    budget.release(10)  # the room is handed to the waiter...
    assert budget.in_use_bytes == 6
    waiting.cancel()  # ...whose connection closes before it could run
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled()
    assert budget.in_use_bytes == 0


async def test_results_waiting_for_one_shared_result_go_in_together_and_count_once() -> None:
    budget = OutputBudget(10)
    await budget.acquire(10, "task-b")
    waiting = [asyncio.create_task(budget.acquire(8, "task-a")) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(wait.done() for wait in waiting)
    budget.release(10, "task-b")
    await turns()
    assert all(wait.done() for wait in waiting), "a sender of the shared result was left waiting"
    assert budget.in_use_bytes == 8
    for _ in range(3):
        budget.release(8, "task-a")
    assert budget.in_use_bytes == 0


async def test_a_shared_result_already_sent_lets_its_next_sender_past_the_queue() -> None:
    budget = OutputBudget(10)
    await budget.acquire(8, "task-a")
    other = asyncio.create_task(budget.acquire(5))  # waits: 8 + 5 > 10
    await asyncio.sleep(0)
    # The process holds task-a already: another connection sending it costs nothing more.
    again = asyncio.create_task(budget.acquire(8, "task-a"))
    await turns()
    assert again.done(), "a result the process holds waited behind others"
    assert budget.in_use_bytes == 8 and not other.done()
    budget.release(8, "task-a")
    await turns()
    assert not other.done()  # one connection still sends it
    budget.release(8, "task-a")
    await turns()
    assert other.done() and budget.in_use_bytes == 5


async def test_a_wait_cancelled_at_the_head_of_the_queue_does_not_hold_back_smaller_ones() -> None:
    budget = OutputBudget(10)
    await budget.acquire(5)
    await budget.acquire(5)
    big = asyncio.create_task(budget.acquire(8))
    small = asyncio.create_task(budget.acquire(4))
    await asyncio.sleep(0)
    big.cancel()  # its connection closes, and room is made before its wait has run again
    budget.release(5)
    await turns()
    assert big.cancelled()
    assert small.done() and budget.in_use_bytes == 9
