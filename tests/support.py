"""Test support: the real processes (Redis, Celery workers, the gateway) and a WebSocket client.

Nothing here is a fake: every helper starts the same programs a user runs. Tests get them from the
``launch`` fixture (a ``Launcher``), which stops whatever it started when the test ends.

Every timeout of the suite is a multiple of ``UNIT_S``; on a slow machine set
``FACTORIAL_WS_TEST_TIMEOUT_FACTOR`` (e.g. 3) to stretch them all at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from factorial_ws import processes
from factorial_ws.config import Config, env_name
from factorial_ws.processes import free_port, port_open, start_child, stop_child, worker_is_live
from factorial_ws.supervisor.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# One second of test time; every timeout below and in the tests is a multiple of it.
UNIT_S = float(os.environ.get("FACTORIAL_WS_TEST_TIMEOUT_FACTOR", "1"))
START_TIMEOUT_S = 30 * UNIT_S
REPLY_TIMEOUT_S = 15 * UNIT_S
STOP_TIMEOUT_S = 15 * UNIT_S

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


def wait_until(
    predicate: Callable[[], object], timeout_s: float = START_TIMEOUT_S, what: str = "condition"
) -> None:
    processes.wait_until(predicate, timeout_s, what)


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

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        return stop_child(self.process, timeout_s)


def spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Proc:
    """Start a process that dies with the test run; prefer ``launch.process`` in tests."""
    log_path = log_dir / f"{name}.log"
    return Proc(name, start_child(command, env, log_path=log_path, cwd=REPO), log_path)


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


class Launcher:
    """Starts the real processes of one test, and stops them all (newest first) when it ends:
    the ``launch`` fixture. Test bodies then need no ``finally:`` of their own."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.log_dir = tmp_dir / "logs"
        self._stops: list[Callable[[], object]] = []

    def close(self) -> None:
        while self._stops:
            self._stops.pop()()

    def process(self, name: str, command: list[str], env: dict[str, str]) -> Proc:
        proc = spawn(name, command, env, self.log_dir)
        self._stops.append(proc.stop)
        return proc

    def redis(
        self, *, name: str = "redis", port: int | None = None, password: str | None = None
    ) -> RedisServer:
        """A real Redis on a free port (or ``port``, to restart one on its data)."""
        server = RedisServer(self.tmp_dir / name, port=port, password=password)
        self._stops.append(server.stop)
        return server.start()

    def worker(
        self,
        redis_url: str,
        *,
        queues: str = "soft,hard",
        concurrency: int = 2,
        name: str | None = None,
        app: str = "celeryqueue",
        **settings: Any,
    ) -> Proc:
        """A real Celery worker (the seed's ``-A celeryqueue`` by default); returns once its
        heartbeat shows it consuming every queue."""
        name = name or f"w{free_port()}"
        hostname = f"{name}@test"
        command = processes.worker_command(queues, concurrency=concurrency, hostname=hostname, app=app)
        proc = self.process(name, command, process_env(redis_url, **settings))
        with redis.Redis.from_url(redis_url) as client:
            processes.wait_until(
                lambda: worker_is_live(client, hostname, queues.split(",")),
                START_TIMEOUT_S,
                f"worker {hostname}",
                watch=[proc.process],
            )
        return proc

    def gateway(
        self, redis_url: str, *, port: int | None = None, name: str = "gateway", **settings: Any
    ) -> tuple[Proc, str]:
        """The real gateway (``python -m factorial_ws serve``); returns it and its ws:// URL."""
        port = port or free_port()
        command = [PYTHON, "-m", "factorial_ws", "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = self.process(name, command, process_env(redis_url, **settings))
        processes.wait_until(
            lambda: port_open(port), START_TIMEOUT_S, f"gateway on port {port}", watch=[proc.process]
        )
        return proc, f"ws://127.0.0.1:{port}/"

    def system(self, *, worker_concurrency: int = 2, **settings: Any) -> System:
        """Redis, a worker for both queues, and a gateway."""
        server = self.redis()
        system = System(server, self.log_dir)
        system.workers.append(self.worker(server.url, concurrency=worker_concurrency, **settings))
        system.gateway, system.url = self.gateway(server.url, **settings)
        return system


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
async def client(url: str, **kwargs: Any) -> AsyncIterator[Client]:
    kwargs.setdefault("max_size", None)
    async with connect(url, **kwargs) as connection:
        yield Client(connection)


@dataclass
class RawPeer:
    """A TCP connection past the WebSocket handshake that speaks no WebSocket by itself."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    head: bytes  # the server's handshake response


@contextlib.asynccontextmanager
async def raw_websocket(url: str) -> AsyncIterator[RawPeer]:
    """A TCP client that completes the opening handshake, then reads or writes only what the
    test makes it (it never answers a ping, and never reads unless told)."""
    host, port = url.removeprefix("ws://").strip("/").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REPLY_TIMEOUT_S)
    try:
        yield RawPeer(reader, writer, head)
    finally:
        writer.close()


def ws_text_frame(text: str) -> bytes:
    """One text frame as a client sends it (masked)."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=True, extensions=[])


# --- legacy helpers: being replaced by the `launch` fixture, then removed ---------------------


def start_worker(
    redis_url: str,
    log_dir: Path,
    *,
    queues: str = "soft,hard",
    concurrency: int = 2,
    name: str | None = None,
    **settings: Any,
) -> Proc:
    launcher = Launcher(log_dir.parent)
    launcher.log_dir = log_dir
    return launcher.worker(redis_url, queues=queues, concurrency=concurrency, name=name, **settings)


def start_gateway(
    redis_url: str, log_dir: Path, *, port: int | None = None, name: str = "gateway", **settings: Any
) -> tuple[Proc, str]:
    launcher = Launcher(log_dir.parent)
    launcher.log_dir = log_dir
    return launcher.gateway(redis_url, port=port, name=name, **settings)


@contextlib.contextmanager
def running_system(tmp_dir: Path, *, worker_concurrency: int = 2, **settings: Any) -> Iterator[System]:
    launcher = Launcher(tmp_dir)
    try:
        yield launcher.system(worker_concurrency=worker_concurrency, **settings)
    finally:
        launcher.close()
