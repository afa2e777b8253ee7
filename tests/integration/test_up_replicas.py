"""`factorial-ws up --replicas 1`: a master, a replica and three Sentinels on this machine, and
the master killed with SIGKILL while `up` runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import redis

from factorial_ws.constants import SERVICE_UNAVAILABLE
from factorial_ws.supervisor import processes
from factorial_ws.supervisor.probes import free_port
from factorial_ws.supervisor.sentinel import DEFAULT_MASTER_NAME
from peers import client
from support import UNIT_S, Launcher, process_env, wait_until

pytestmark = pytest.mark.long  # 20 s or more: started first (conftest.py)

FACTORIAL_WS = str(Path(sys.executable).parent / "factorial-ws")
RECOVERY_S = 15 * UNIT_S


def master_port(group_dir: Path) -> int:
    """The master's port, as the first Sentinel that answers names it."""
    layout = json.loads((group_dir / "group.json").read_text())
    for port in layout["sentinels"]:
        with redis.Redis(port=port, socket_timeout=1) as sentinel:
            try:
                return int(sentinel.sentinel_get_master_addr_by_name(DEFAULT_MASTER_NAME)[1])
            except redis.RedisError:
                continue
    raise AssertionError("no Sentinel answers")


def server_dir(group_dir: Path, port: int) -> Path:
    layout = json.loads((group_dir / "group.json").read_text())
    return group_dir / f"redis-{layout['servers'].index(port)}"


def role(port: int) -> str:
    try:
        with redis.Redis(port=port, socket_timeout=1) as server:
            return str(server.info("replication")["role"])
    except redis.RedisError:
        return "down"


async def factorial_of_5_succeeds(url: str) -> bool:
    async with client(url) as ws:
        reply = await ws.request({"type": "factorial", "number": 5})
        if reply["type"] == "error":
            assert reply == {"type": "error", "result": SERVICE_UNAVAILABLE}
            return False
        final = await ws.recv()
    assert final == {"type": "success", "task_id": reply["task_id"], "result": 120}
    return True


async def test_up_with_replicas_serves_again_after_its_master_is_killed_and_restarts_it_as_a_replica(
    launch: Launcher, tmp_path: Path
) -> None:
    ws_port = free_port()
    data_dir = tmp_path / "data"
    env = process_env(
        None, WS_PORT=ws_port, FACTORIAL_WS_DATA_DIR=data_dir, SOFT_CONCURRENCY=1, HARD_CONCURRENCY=1
    )
    up = launch.process("up", [FACTORIAL_WS, "up", "--replicas", "1"], env, stop_signal=signal.SIGKILL)
    url = f"ws://localhost:{ws_port}/"
    processes.wait_until(
        lambda: f"factorial-ws is up: {url}" in up.log(), 60 * UNIT_S, "factorial-ws up", watch=[up.process]
    )
    assert await factorial_of_5_succeeds(url)

    group_dir = data_dir / "redis-group"
    old_master = master_port(group_dir)
    old_pid = int((server_dir(group_dir, old_master) / "redis.pid").read_text())
    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while not await factorial_of_5_succeeds(url):
        assert time.monotonic() - killed_at < RECOVERY_S, "no factorial(5) within 15 s of the kill"
        await asyncio.sleep(0.5)

    assert master_port(group_dir) != old_master
    # `up` started the killed server again, and the Sentinels made it a replica of the new master.
    wait_until(lambda: role(old_master) == "slave", 30 * UNIT_S, "the old master to come back as a replica")
    assert int((server_dir(group_dir, old_master) / "redis.pid").read_text()) != old_pid
    assert up.alive()
