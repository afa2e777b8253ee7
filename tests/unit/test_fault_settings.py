"""How soon a task left behind by a worker that died outright is handed out again."""

from __future__ import annotations

import pytest

from factorial_ws.celeryapp import celery_settings
from factorial_ws.config import Config


@pytest.mark.parametrize(
    ("visibility_timeout_s", "sweep_s"),
    [(5, 1), (7, 1), (30, 3), (300, 10), (3600, 10)],
)
def test_workers_sweep_for_lost_tasks_every_tenth_of_the_visibility_timeout_between_1_and_10_s(
    visibility_timeout_s: int, sweep_s: int
) -> None:
    config = Config(hard_task_timeout_s=1, visibility_timeout_s=visibility_timeout_s)
    options = celery_settings(config)["broker_transport_options"]
    assert options["visibility_timeout"] == visibility_timeout_s
    # kombu sweeps every interval * throttle seconds (100 s by default).
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] == sweep_s
