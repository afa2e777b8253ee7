"""`REDIS_URL=unix:///path/to/redis.sock`: workers and the gateway reach a real Redis that
listens only on a Unix socket."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from factorial_ws.supervisor.redis_server import find_redis_server
from peers import client
from support import Launcher, process_env, wait_until

from .fault_tools import result_by_id


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # A short path: a Unix socket's path is limited to 107 bytes, and pytest's tmp_path is long.
    with tempfile.TemporaryDirectory(prefix="fws-") as name:
        yield Path(name)


def unix_socket_redis(launch: Launcher, socket_dir: Path) -> str:
    """A real redis-server with no TCP port; returns its unix:// URL once it answers."""
    path = socket_dir / "redis.sock"
    command = [
        find_redis_server(), "--port", "0", "--unixsocket", str(path), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--dir", str(socket_dir),
    ]  # fmt: skip
    launch.process("redis-unix", command, process_env(None))
    url = f"unix://{path}?db=0"

    def answers() -> bool:
        try:
            with redis.Redis.from_url(url) as r:
                return bool(r.ping())
        except redis.ConnectionError:
            return False

    wait_until(answers, what="redis-server on its Unix socket")
    return url


async def test_workers_and_gateway_serve_through_a_redis_on_a_unix_socket(
    launch: Launcher, socket_dir: Path
) -> None:
    url = unix_socket_redis(launch, socket_dir)
    launch.worker(url, concurrency=1)
    _, ws_url = launch.gateway(url)
    async with client(ws_url) as ws:
        ack, done = await ws.factorial(5)
        assert done == {"type": "success", "task_id": ack["task_id"], "result": 120}
        ack, done = await ws.factorial(1001)  # the hard queue
        assert done["type"] == "success", done
    assert (await result_by_id(ws_url, ack["task_id"]))["type"] == "success"
