"""The seed's integration test: factorial of 5, ack and result linked by the task id."""

from __future__ import annotations

from factorial_ws.protocol import is_task_id
from peers import client
from support import System


async def test_factorial_of_5_is_acked_with_a_task_id_then_pushed_as_120(system: System) -> None:
    async with client(system.url) as ws:
        ack, result = await ws.factorial(5)
    assert ack["type"] == "result" and is_task_id(ack["task_id"])
    assert result == {"type": "success", "task_id": ack["task_id"], "result": 120}
