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
import time
from pathlib import Path

from ..config import Config
from ..constants import HARD_QUEUE, SOFT_QUEUE
from ..processes import (
    STOP_GRACE_S,
    ChildExited,
    port_open,
    stop_children,
    wait_for_exit,
    wait_until,
    worker_command,
)
from .child import SupervisedChild
from .gateways import WATCH_INTERVAL_S, gateway_children
from .redis_server import RedisServer, RedisServerError

logger = logging.getLogger(__name__)

_PIDS_FILE = "up.pids"
_READY_TIMEOUT_S = 60.0


class Supervisor:
    def __init__(self, config: Config, *, own_redis: bool) -> None:
        self.config = config
        self.own_redis = own_redis
        self.redis: RedisServer | None = None
        self.workers: list[SupervisedChild] = []
        self.gateways: list[SupervisedChild] = []
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
        try:
            wait_until(
                lambda: self._stopping or port_open(self.config.ws_port, self.config.client_host),
                _READY_TIMEOUT_S,
                "the gateway",
                watch=[p for p in (child.running() for child in self.gateways) if p is not None],
            )
        except ChildExited:
            return False  # _watch restarts it or gives up
        except TimeoutError:
            logger.warning("the gateway does not accept connections after %.0f s", _READY_TIMEOUT_S)
            return False
        return not self._stopping

    def _start_all(self) -> None:
        if self.own_redis:
            self.redis = RedisServer(
                self.config.data_dir / "redis",
                death_signal=signal.SIGTERM,  # SIGTERM: Redis flushes its AOF
            ).start()
            self.config = self.config.replace(redis_url=self.redis.url)
            logger.info("private Redis on %s, data in %s", self.redis.url, self.redis.data_dir)
        env = {**os.environ, **self.config.to_env()}
        self.workers = [
            SupervisedChild("soft worker", _worker(SOFT_QUEUE, self.config.soft_concurrency), env),
            SupervisedChild("hard worker", _worker(HARD_QUEUE, self.config.hard_concurrency), env),
        ]
        # Each gateway process is our own child, so each is in the pid list and restarted here.
        self.gateways = gateway_children(self.config, env)
        for child in self.children:
            child.start()
        self._write_pids()

    @property
    def children(self) -> list[SupervisedChild]:
        return self.workers + self.gateways

    def _watch(self) -> int:
        while not self._stopping:
            if self.redis is not None and self.redis.process and self.redis.process.poll() is not None:
                logger.error("the private Redis exited (code %s)", self.redis.process.returncode)
                return 1
            pids = self._pids()
            if not all([child.keep_running() for child in self.children]):
                return 1
            if self._pids() != pids:
                self._write_pids()
            time.sleep(WATCH_INTERVAL_S)
        return 0

    def _stop_all(self) -> None:
        """Gateways first (clients get 1001), then workers, then Redis, each within a grace."""
        for group in (self.gateways, self.workers):
            stop_children([p for p in (child.running() for child in group) if p is not None])
        if self.redis is not None:
            self.redis.stop()
        with contextlib.suppress(FileNotFoundError):
            self.pids_file.unlink()

    def _pids(self) -> list[int]:
        pids = [child.pid for child in self.children if child.pid is not None]
        if self.redis is not None and self.redis.process is not None:
            pids.append(self.redis.process.pid)
        return pids

    def _write_pids(self) -> None:
        self.pids_file.write_text("\n".join(map(str, self._pids())) + "\n")

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
