"""The process-wide budget of result bytes (``OutputBudget``): what it lets through at once,
what waits, and that a result several connections send counts once."""

from __future__ import annotations

import asyncio

from factorial_ws.gateway.outbox import OutputBudget


async def test_a_result_waits_while_the_budget_is_full_and_goes_once_room_is_made() -> None:
    budget = OutputBudget(10)
    await budget.acquire(6)
    waiting = asyncio.create_task(budget.acquire(6))
    await asyncio.sleep(0)
    assert not waiting.done() and budget.in_use_bytes == 6
    budget.release(6)
    await asyncio.wait_for(waiting, 1)
    assert budget.in_use_bytes == 6


async def test_a_result_larger_than_the_budget_goes_alone() -> None:
    budget = OutputBudget(10)
    await asyncio.wait_for(budget.acquire(25), 1)
    assert budget.in_use_bytes == 25


async def test_a_shared_result_counts_once_for_every_connection_that_sends_it() -> None:
    budget = OutputBudget(10)
    for _ in range(5):
        await asyncio.wait_for(budget.acquire(8, "task-a"), 1)
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
    await asyncio.wait_for(asyncio.gather(big, small), 1)
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
