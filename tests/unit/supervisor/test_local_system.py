"""The local system's workers: one per queue, each with its own pool size, under a node name its
heartbeat can be waited for."""

from __future__ import annotations

import socket

from factorial_ws.config import Config
from factorial_ws.supervisor.local_system import queue_workers


def test_each_queue_gets_a_worker_of_its_own_with_its_pool_size() -> None:
    soft, hard = queue_workers(Config(soft_concurrency=3, hard_concurrency=1))
    assert (soft.queues, soft.concurrency) == ("soft", 3)
    assert (hard.queues, hard.concurrency) == ("hard", 1)
    command = hard.command()
    assert command[command.index("-Q") + 1] == "hard"
    assert "--concurrency=1" in command


def test_a_worker_is_named_as_celery_would_name_it_so_its_heartbeat_can_be_awaited() -> None:
    soft, _ = queue_workers(Config(), options=("-E",))
    command = soft.command()
    assert command[command.index("-n") + 1] == soft.hostname == f"soft@{socket.gethostname()}"
    assert command[-1] == "-E"
