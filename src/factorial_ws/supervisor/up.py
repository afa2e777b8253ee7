"""`factorial-ws up`: the whole system on one machine, in the foreground.

A private Redis (unless REDIS_URL is set) with an append-only file in the data folder, one worker
pool per queue (so a flood of large numbers cannot delay small ones), and the gateway. Children
get PR_SET_PDEATHSIG, so even `kill -9` of this process leaves none of them running; a restart
also kills whatever a previous run left in its pid list.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..constants import HARD_QUEUE, SOFT_QUEUE
from ..processes import (
    STOP_GRACE_S,
    ChildExited,
    gateway_command,
    port_open,
    start_child,
    stop_child,
    wait_for_exit,
    wait_until,
    worker_command,
)
from .redis_server import RedisServer, RedisServerError, private_redis

logger = logging.getLogger(__name__)

_PIDS_FILE = "up.pids"
_READY_TIMEOUT_S = 60.0
_MAX_RESTARTS_PER_MINUTE = 5


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(self, config: Config, *, own_redis: bool) -> None:
        self.config = config
        self.own_redis = own_redis
        self.redis: RedisServer | None = None
        self.children: list[Child] = []
        self._stopping = False

    @property
    def pids_file(self) -> Path:
        return self.config.data_dir / _PIDS_FILE

    def run(self) -> int:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._kill_leftovers()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start_all()
            if self._wait_until_serving():
                print(
                    f"factorial-ws is up: {self.config.public_url}  "
                    f"(page: {self.config.page_url}; Ctrl-C stops it)",
                    flush=True,
                )
            return self._watch()
        except RedisServerError as exc:
            logger.error("%s", exc)
            return 1
        finally:
            self._stop_all()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _wait_until_serving(self) -> bool:
        """True once the gateway accepts connections: the printed URL must work at once."""
        gateway = self.children[-1].process
        assert gateway is not None
        try:
            wait_until(
                lambda: self._stopping or port_open(self.config.ws_port, self.config.client_host),
                _READY_TIMEOUT_S,
                "the gateway",
                watch=[gateway],
            )
        except ChildExited:
            return False  # _watch restarts it or gives up
        except TimeoutError:
            logger.warning("the gateway does not accept connections after %.0f s", _READY_TIMEOUT_S)
            return False
        return not self._stopping

    def _start_all(self) -> None:
        if self.own_redis:
            self.redis = private_redis(self.config).start()
            self.config = self.config.replace(redis_url=self.redis.url)
            logger.info("private Redis on %s, data in %s", self.redis.url, self.redis.data_dir)
        self.children = [
            Child("soft worker", _worker(SOFT_QUEUE, self.config.soft_concurrency)),
            Child("hard worker", _worker(HARD_QUEUE, self.config.hard_concurrency)),
            Child("gateway", gateway_command()),
        ]
        for child in self.children:
            self._spawn(child)
        self._write_pids()

    def _spawn(self, child: Child) -> None:
        env = {**os.environ, **self.config.to_env()}
        # SIGKILL: workers and gateways keep nothing worth saving (unacknowledged tasks are
        # redelivered), and one left finishing a task after we are gone would be an orphan.
        child.process = start_child(child.command, env)

    def _watch(self) -> int:
        while not self._stopping:
            if self.redis is not None and self.redis.process and self.redis.process.poll() is not None:
                logger.error("the private Redis exited (code %s)", self.redis.process.returncode)
                return 1
            for child in self.children:
                assert child.process is not None
                code = child.process.poll()
                if code is not None and not self._stopping and not self._restart(child, code):
                    return 1
            time.sleep(0.2)
        return 0

    def _restart(self, child: Child, code: int) -> bool:
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < 60] + [now]
        if len(child.restarts) > _MAX_RESTARTS_PER_MINUTE:
            logger.error("%s keeps exiting (code %s); giving up", child.name, code)
            return False
        logger.warning("%s exited (code %s); restarting it", child.name, code)
        self._spawn(child)
        self._write_pids()
        return True

    def _stop_all(self) -> None:
        """Gateway first (clients get 1001), then workers, then Redis, each within a grace."""
        for child in reversed(self.children):
            if child.process is not None:
                stop_child(child.process)
        if self.redis is not None:
            self.redis.stop()
        with contextlib.suppress(FileNotFoundError):
            self.pids_file.unlink()

    def _write_pids(self) -> None:
        pids = [c.process.pid for c in self.children if c.process is not None]
        if self.redis is not None and self.redis.process is not None:
            pids.append(self.redis.process.pid)
        self.pids_file.write_text("\n".join(map(str, pids)) + "\n")

    def _kill_leftovers(self) -> None:
        """Whatever a killed earlier run left behind must not share our data or ports."""
        try:
            pids = [int(line) for line in self.pids_file.read_text().split()]
        except (FileNotFoundError, ValueError):
            return
        for pid in pids:
            if _is_ours(pid):
                logger.warning("stopping process %d left by an earlier run", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not wait_for_exit(pid, STOP_GRACE_S):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    wait_for_exit(pid, STOP_GRACE_S)


def _worker(queue: str, concurrency: int) -> list[str]:
    return worker_command(queue, concurrency=concurrency, hostname=f"{queue}@%h")


def _is_ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"factorial_ws" in cmdline or b"redis-server" in cmdline


def run_up(config: Config, *, redis_url_given: bool) -> int:
    return Supervisor(config, own_redis=not redis_url_given).run()
