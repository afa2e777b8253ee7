"""Flower, Celery's monitor, against `factorial-ws up` as docs/operations.md starts it: it lists
both workers online and shows a factorial(5) task that succeeded (read through its HTTP API)."""

from __future__ import annotations

import json
import re
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from factorial_ws.supervisor import processes
from factorial_ws.supervisor.probes import free_port, port_open
from peers import client
from support import PYTHON, UNIT_S, Launcher, process_env, wait_until

pytest.importorskip("flower", reason="Flower is the optional extra `monitor`")

FACTORIAL_WS = str(Path(sys.executable).parent / "factorial-ws")
EVENTS_ENABLED = "Events of group {task} enabled by remote."


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5 * UNIT_S) as response:
        return json.loads(response.read())


def online_workers(port: int) -> list[str]:
    """Flower's worker list (the one its Workers page shows), built from worker events."""
    workers = get_json(port, "/workers?json=1")["data"]
    return sorted(worker["hostname"] for worker in workers if worker["status"])


async def test_flower_against_up_lists_both_workers_online_and_a_succeeded_task(
    launch: Launcher, tmp_path: Path
) -> None:
    ws_port, flower_port = free_port(), free_port()
    env = process_env(
        None,
        WS_PORT=ws_port,
        FACTORIAL_WS_DATA_DIR=tmp_path / "data",
        SOFT_CONCURRENCY=1,
        HARD_CONCURRENCY=1,
    )
    up = launch.process("up", [FACTORIAL_WS, "up"], env, stop_signal=signal.SIGKILL)
    url = f"ws://localhost:{ws_port}/"
    processes.wait_until(
        lambda: f"factorial-ws is up: {url}" in up.log(), 60 * UNIT_S, "factorial-ws up", watch=[up.process]
    )
    found = re.search(r"private Redis on (redis://[^\s,]+)", up.log())
    assert found, up.log()

    # As docs/operations.md says: the seed's app, with REDIS_URL pointing at up's Redis.
    flower_env = process_env(found[1], FLOWER_UNAUTHENTICATED_API="true")
    command = [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "celeryqueue",
        "flower",
        "--address=127.0.0.1",
        f"--port={flower_port}",
    ]
    flower = launch.process("flower", command, flower_env)
    processes.wait_until(lambda: port_open(flower_port), 30 * UNIT_S, "Flower", watch=[flower.process])

    wait_until(lambda: len(online_workers(flower_port)) == 2, 30 * UNIT_S, "both workers online in Flower")
    assert [name.split("@")[0] for name in online_workers(flower_port)] == ["hard", "soft"]
    # Flower switches task events on in every worker (`enable_events`, every 5 s), no restart.
    wait_until(lambda: up.log().count(EVENTS_ENABLED) >= 2, 30 * UNIT_S, "task events switched on")

    async with client(url) as ws:
        ack, final = await ws.factorial(5)
    assert final == {"type": "success", "task_id": ack["task_id"], "result": 120}

    def succeeded_in_flower() -> bool:
        tasks = get_json(flower_port, "/api/tasks")
        task = tasks.get(ack["task_id"])
        return task is not None and task["state"] == "SUCCESS"

    wait_until(succeeded_in_flower, 15 * UNIT_S, "Flower to show the task as succeeded")
    task = get_json(flower_port, f"/api/task/info/{ack['task_id']}")
    assert (task["name"], task["args"], task["worker"].split("@")[0]) == (
        "factorial_ws.factorial_soft",
        "(5,)",
        "soft",
    )
