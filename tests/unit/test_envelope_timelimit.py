"""The gateway's task message carries the task's time limits, as ``apply_async`` sends them."""

from __future__ import annotations

import json

import pytest

from factorial_ws.celeryapp import create_app
from factorial_ws.config import Config
from factorial_ws.gateway.producer import task_envelope

TASK_ID = "2f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09"


@pytest.mark.parametrize(("queue", "number", "time_limit_s"), [("soft", 5, 3.5), ("hard", 5000, 7.0)])
def test_the_envelope_carries_its_tasks_time_limit(queue: str, number: int, time_limit_s: float) -> None:
    app = create_app(Config(soft_task_timeout_s=3.5, hard_task_timeout_s=7.0))
    headers = json.loads(task_envelope(app, TASK_ID, queue, number))["headers"]
    # [hard, soft], as apply_async sends them: the task's own time_limit, and no soft limit (GMP
    # runs in C, where a soft limit's exception would never be raised).
    assert headers["timelimit"] == [time_limit_s, None]
