"""`factorial-ws up`: the whole system on one machine, in the foreground.

A private Redis (unless REDIS_URL is set) with an append-only file in the data folder, one worker
pool per queue (so a flood of large numbers cannot delay small ones), and the gateway. Children
get PR_SET_PDEATHSIG, so even `kill -9` of this process leaves none of them running; a restart
also stops whatever a previous run left in its pid list. It starts nothing when its port is
taken, and says it is up only once its own gateway processes are the ones listening.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
import signal
import tempfile
import time
from pathlib import Path

import redis

from ..config import Config
from ..constants import (
    HARD_QUEUE,
    SOFT_QUEUE,
    SUPERVISOR_PROBLEMS_KEY,
    SUPERVISOR_REPORT_S,
    SUPERVISOR_REPORT_TTL_S,
)
from ..redis_clients import sync_client
from ..worker.processes import WORKER_STOP_SIGNALS, worker_command
from . import pid_list
from .child import SupervisedChild, running_processes
from .gateways import WATCH_INTERVAL_S, gateway_children, shared_metrics_folder
from .probes import command_line, listening_pids, listening_sockets, port_taken, socket_inodes
from .processes import ChildExited, stop_children, wait_until
from .redis_server import RedisServer, RedisServerError, private_redis
from .sentinel import RedisGroup, Timing

logger = logging.getLogger(__name__)

_PIDS_FILE = "up.pids"
_READY_TIMEOUT_S = 60.0
_COMMAND_SHOWN_CHARS = 80
# A master silent for 3 s is failed over: quick to try on one machine, and still far above
# the longest command Redis runs here (storing a 5.5 MB result takes milliseconds).
_LOCAL_TIMING = Timing(down_after_ms=3000, failover_timeout_ms=10000)


class Supervisor:
    def __init__(self, config: Config, *, own_redis: bool) -> None:
        self.config = config
        self.own_redis = own_redis
        self.redis: RedisServer | None = None
        self.group: RedisGroup | None = None  # with REDIS_REPLICAS: master, replicas, Sentinels
        self.workers: list[SupervisedChild] = []
        self.gateways: list[SupervisedChild] = []
        self._shared_metrics: tempfile.TemporaryDirectory[str] | None = None  # of the gateways
        self._stopping = False
        self._report = ProblemReport()

    @property
    def pids_file(self) -> Path:
        return self.config.data_dir / _PIDS_FILE

    def run(self) -> int:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        pid_list.stop_leftovers(self.pids_file)
        if port_taken(self.config.ws_host, self.config.ws_port):
            logger.error("%s", _port_taken_by(self.config.ws_port, listening_pids(self.config.ws_port)))
            return 1
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start_all()
            if not self._wait_until_serving():
                return 1
            if self._stopping:
                return 0
            print(
                f"factorial-ws is up: {self.config.public_url}  "
                f"(page: {self.config.page_url}; Ctrl-C stops it)",
                flush=True,
            )
            if self.own_redis:
                print(
                    f"its Redis, for the seed's commands and Flower: {_redis_variables(self.config)}",
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
        """Wait until each gateway process of ours listens on the port (the printed URL must
        work at once) and no other process listens beside them (it would get some of the
        connections); False, said in one line, if that does not happen."""
        port = self.config.ws_port
        gateways = running_processes(self.gateways)

        def listening() -> bool:
            sockets = listening_sockets(port).keys()
            return all(socket_inodes(gateway.pid) & sockets for gateway in gateways)

        try:
            wait_until(lambda: self._stopping or listening(), _READY_TIMEOUT_S, "the gateway", watch=gateways)
        except ChildExited:
            logger.error("a gateway process exited before it listened on port %d (see above)", port)
            return False
        except TimeoutError:
            logger.error("the gateway does not listen on port %d after %.0f s", port, _READY_TIMEOUT_S)
            return False
        shared = _sockets_beside(port, {gateway.pid for gateway in gateways})
        if shared and not self._stopping:
            strangers = {pid for pid in listening_pids(port) if socket_inodes(pid) & shared}
            logger.error("%s", _port_taken_by(port, strangers))
            return False
        return True

    def _start_all(self) -> None:
        if self.own_redis and self.config.redis_replicas:
            self._start_group()
        elif self.own_redis:
            self.redis = private_redis(self.config).start()
            if self.config.redis_port and self.redis.port != self.config.redis_port:
                logger.warning(
                    "port %d is taken by another process; the private Redis listens on %d instead, "
                    "for this run (REDIS_PORT sets another)",
                    self.config.redis_port,
                    self.redis.port,
                )
            self.config = self.config.replace(redis_url=self.redis.url)
            logger.info("private Redis on %s, data in %s", self.redis.url, self.redis.data_dir)
        self._report = ProblemReport(sync_client(self.config, socket_timeout=1.0, socket_connect_timeout=1.0))
        env = {**os.environ, **self.config.to_env()}
        self.workers = [
            SupervisedChild("soft worker", _worker(SOFT_QUEUE, self.config.soft_concurrency), env),
            SupervisedChild("hard worker", _worker(HARD_QUEUE, self.config.hard_concurrency), env),
        ]
        # Each gateway process is our own child, so each is in the pid list and restarted here;
        # several share a metrics folder, so any one of them reports the whole gateway.
        gateway_env = dict(env)
        self._shared_metrics = shared_metrics_folder(self.config, gateway_env)
        self.gateways = gateway_children(self.config, gateway_env)
        for child in self.children:
            child.start()
        pid_list.write(self.pids_file, self._pids())

    def _start_group(self) -> None:
        self.group = RedisGroup(
            self.config.data_dir / "redis-group", replicas=self.config.redis_replicas, timing=_LOCAL_TIMING
        ).start()
        self.config = self.group.config_for(self.config)
        logger.info(
            "private Redis: a master, %d replicas and %d Sentinels (REDIS_URL=%s REDIS_SENTINEL_MASTER=%s)",
            self.config.redis_replicas,
            len(self.group.sentinels),
            self.config.redis_url,
            self.config.redis_sentinel_master,
        )

    @property
    def children(self) -> list[SupervisedChild]:
        return self.workers + self.gateways

    def _watch(self) -> int:
        while not self._stopping:
            if self.redis is not None and self.redis.process and self.redis.process.poll() is not None:
                logger.error("the private Redis exited (code %s)", self.redis.process.returncode)
                return 1
            pids = self._pids()
            # A server or Sentinel of the group that died is started again: the Sentinels fail
            # over meanwhile, and make a returning master a replica of the new one.
            if self.group is not None:
                self.group.restart_exited()
            for child in self.children:
                child.keep_running()
            self._report.publish([child.problem() for child in self.children])
            if self._pids() != pids:
                pid_list.write(self.pids_file, self._pids())
            time.sleep(WATCH_INTERVAL_S)
        return 0

    def _stop_all(self) -> None:
        """Gateways first (clients get 1001), then workers (a warm shutdown, then a cold one
        that hands back the tasks still running), then Redis, each within a grace."""
        stop_children(running_processes(self.gateways))
        if self._shared_metrics is not None:
            self._shared_metrics.cleanup()
        stop_children(running_processes(self.workers), signals=WORKER_STOP_SIGNALS)
        self._report.close()
        if self.redis is not None:
            self.redis.stop()
        if self.group is not None:
            self.group.stop()
        with contextlib.suppress(FileNotFoundError):
            self.pids_file.unlink()

    def _pids(self) -> list[int]:
        pids = [child.pid for child in self.children if child.pid is not None]
        if self.redis is not None and self.redis.process is not None:
            pids.append(self.redis.process.pid)
        if self.group is not None:
            pids += [process.pid for process in self.group.processes()]
        return pids


class ProblemReport:
    """Tells the gateway's /healthz which children keep failing, through Redis (the gateway may
    be one of them, and several gateway processes each answer /healthz). Written once a second
    while any child fails, then deleted; it expires by itself should `up` die."""

    def __init__(self, client: redis.Redis | None = None) -> None:
        self._client = client
        self._written_at = -math.inf
        self._written: list[str] = []

    def publish(self, problems: list[str | None]) -> None:
        current = [problem for problem in problems if problem]
        now = time.monotonic()
        if self._client is None or (current == self._written == []):
            return
        if current == self._written and now - self._written_at < SUPERVISOR_REPORT_S:
            return
        try:
            pipe = self._client.pipeline()
            pipe.delete(SUPERVISOR_PROBLEMS_KEY)
            if current:
                pipe.hset(SUPERVISOR_PROBLEMS_KEY, mapping=dict(enumerate(current)))
                pipe.expire(SUPERVISOR_PROBLEMS_KEY, SUPERVISOR_REPORT_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:  # Redis away or full: the next tick tries again
            logger.debug("could not report the failing children: %s", exc)
            return
        self._written, self._written_at = current, now

    def close(self) -> None:
        if self._client is not None:
            self.publish([])
            self._client.close()


def _worker(queue: str, concurrency: int) -> list[str]:
    return worker_command(queue, concurrency=concurrency, hostname=f"{queue}@%h")


def _redis_variables(config: Config) -> str:
    """The variables that point a process at this Redis, as a line to paste into a shell."""
    variables = {"REDIS_URL": config.redis_url, "REDIS_SENTINEL_MASTER": config.redis_sentinel_master}
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items() if value)


def _sockets_beside(port: int, pids: set[int]) -> set[int]:
    """Sockets of other processes listening on the same address and port as those of ``pids``
    (through SO_REUSEPORT): the kernel would hand them some of our connections."""
    sockets = listening_sockets(port)
    ours = set().union(*(socket_inodes(pid) for pid in pids)) & sockets.keys()
    addresses = {sockets[inode] for inode in ours}
    return {inode for inode, address in sockets.items() if address in addresses and inode not in ours}


def _port_taken_by(port: int, pids: set[int]) -> str:
    # One line: a command line may hold newlines (python -c "...").
    shown = {pid: " ".join(command_line(pid).split())[:_COMMAND_SHOWN_CHARS] for pid in pids}
    holders = "; ".join(f"pid {pid}: {command}" for pid, command in sorted(shown.items()))
    return f"port {port} is taken by another process ({holders or 'not ours to see'}); stop it or set WS_PORT"


def run_up(config: Config, *, redis_url_given: bool) -> int:
    return Supervisor(config, own_redis=not redis_url_given).run()
