"""The Python client library's progress states and cancel against the real gateway, a one-process
hard worker and Redis (issue 13)."""

from __future__ import annotations

import asyncio

import pytest

from factorial_ws import Client, TaskCancelled
from support import UNIT_S, Launcher

from .fault_tools import LONG_NUMBER, SLOW_NUMBER, factorial_digits
from .test_progress_cancel import hard_system


async def test_a_progress_handle_follows_its_task_and_cancel_takes_the_next_one_back(
    launch: Launcher,
) -> None:
    _, hard, url = hard_system(launch)
    async with Client(url) as client:
        running = await client.submit(SLOW_NUMBER, digits=True, progress=True)
        async for state in running.states():
            if state == "started":
                break
        waiting = await client.submit(LONG_NUMBER, digits=True, progress=True)
        assert await asyncio.wait_for(waiting.cancel(), 10 * UNIT_S) is True
        with pytest.raises(TaskCancelled):
            await waiting
        states = [state async for state in running.states()]
        digits = await running
        assert await client.cancel(running.task_id) is False  # it had ended: its result came instead

    assert states == ["pending", "queued", "started", "done"]
    assert running.ahead == 0 and digits == factorial_digits(SLOW_NUMBER)
    assert waiting.state == "cancelled" and waiting.ahead == 1
    assert f"[{waiting.task_id}] succeeded" not in hard.log()
