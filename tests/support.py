"""Test support: the real processes (Redis, Celery workers, the gateway) and a WebSocket client.

Nothing here is a fake: every helper starts the same programs a user runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from websockets.asyncio.client import ClientConnection, connect

from factorial_ws.config import Config, env_name
from factorial_ws.constants import WORKERS_KEY_PREFIX
from factorial_ws.processes import free_port, port_open
from factorial_ws.supervisor.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
START_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 15.0

# Variables of ours that must not leak from the developer's shell into the processes under test.
_OUR_VARIABLES = {env_name(f.name) for f in dataclasses.fields(Config)}


def process_env(redis_url: str | None, **settings: Any) -> dict[str, str]:
    """The environment for a process under test: ours cleared, then ``settings`` by env name."""
    env = {k: v for k, v in os.environ.items() if k not in _OUR_VARIABLES}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update({name: str(value) for name, value in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """A child process whose output goes to a log file (read it in assertions)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip
    return Proc(name, process, log_path)


def wait_until(predicate: Any, timeout_s: float = START_TIMEOUT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def start_worker(
    redis_url: str,
    log_dir: Path,
    *,
    queues: str = "soft,hard",
    concurrency: int = 2,
    name: str | None = None,
    **settings: Any,
) -> Proc:
    """A real Celery worker; returns once its heartbeat shows it consuming every queue."""
    name = name or f"w{free_port()}"
    hostname = f"{name}@test"
    command = [
        PYTHON, "-m", "celery", "-A", "celeryqueue", "worker", "--pool=prefork",
        f"--concurrency={concurrency}", "-Q", queues, "-n", hostname, "--loglevel=INFO",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    proc = spawn(name, command, process_env(redis_url, **settings), log_dir)
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(
            lambda: (
                _fail_if_dead(proc)
                and all(client.zscore(WORKERS_KEY_PREFIX + q, hostname) for q in queues.split(","))
            ),
            what=f"worker {hostname}",
        )
    finally:
        client.close()
    return proc


def start_gateway(
    redis_url: str, log_dir: Path, *, port: int | None = None, name: str = "gateway", **settings: Any
) -> tuple[Proc, str]:
    """The real gateway (``python -m factorial_ws serve``); returns it and its ws:// URL."""
    port = port or free_port()
    command = [PYTHON, "-m", "factorial_ws", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = spawn(name, command, process_env(redis_url, **settings), log_dir)
    wait_until(lambda: _fail_if_dead(proc) and port_open(port), what=f"gateway on port {port}")
    return proc, f"ws://127.0.0.1:{port}/"


def _fail_if_dead(proc: Proc) -> bool:
    if not proc.alive():
        raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.log()[-3000:]}")
    return True


@dataclass
class System:
    """Redis, workers and one gateway, all real processes."""

    redis: RedisServer
    log_dir: Path
    workers: list[Proc] = field(default_factory=list)
    gateway: Proc | None = None
    url: str = ""

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def stop(self) -> None:
        procs = ([self.gateway] if self.gateway else []) + self.workers
        for proc in procs:
            proc.stop()
        self.redis.stop()


@contextlib.contextmanager
def running_system(tmp_dir: Path, *, worker_concurrency: int = 2, **settings: Any) -> Iterator[System]:
    server = RedisServer(tmp_dir / "redis").start()
    system = System(server, tmp_dir / "logs")
    try:
        system.workers.append(
            start_worker(server.url, system.log_dir, concurrency=worker_concurrency, **settings)
        )
        system.gateway, system.url = start_gateway(server.url, system.log_dir, **settings)
        yield system
    finally:
        system.stop()


class Client:
    """A WebSocket client that speaks JSON, with a timeout on every receive."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.connection.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv(self, timeout_s: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.connection.recv(), timeout_s)
        reply = json.loads(frame)
        assert isinstance(reply, dict), reply
        return reply

    async def request(self, message: dict[str, Any], timeout_s: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        await self.send(message)
        return await self.recv(timeout_s)

    async def factorial(
        self, number: int, timeout_s: float = REPLY_TIMEOUT_S
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send one factorial request; return the ack and the final reply."""
        ack = await self.request({"type": "factorial", "number": number}, timeout_s)
        return ack, await self.recv(timeout_s)


@contextlib.asynccontextmanager
async def client(url: str, **kwargs: Any) -> Any:
    kwargs.setdefault("max_size", None)
    async with connect(url, **kwargs) as connection:
        yield Client(connection)
