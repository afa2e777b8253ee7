"""`factorial-ws up`: the whole system on one machine, in the foreground.

The local system (``local_system.py``: a private Redis unless REDIS_URL is set, a worker per
queue, the gateway), with its children started again when they exit and reported on /healthz
while they keep failing. Children
get PR_SET_PDEATHSIG, so even `kill -9` of this process leaves none of them running; a restart
also stops whatever a previous run left in its pid list. It starts nothing when its port is
taken, and says it is up only once its own gateway processes are the ones listening.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from pathlib import Path

import redis

from ..config import Config
from ..constants import SUPERVISOR_PROBLEMS_KEY, SUPERVISOR_REPORT_S, SUPERVISOR_REPORT_TTL_S
from ..redis_clients import sync_client
from . import pid_list
from .child import running_processes
from .gateways import WATCH_INTERVAL_S
from .local_system import READY_TIMEOUT_S, LocalSystem, private_redis_of
from .probes import command_line, listening_pids, listening_sockets, port_taken, socket_inodes
from .processes import ChildExited, wait_until
from .redis_server import RedisServer, RedisServerError
from .sentinel import RedisGroup

logger = logging.getLogger(__name__)

_PIDS_FILE = "up.pids"
_COMMAND_SHOWN_CHARS = 80


class Supervisor:
    """The local system (``LocalSystem``), its children kept running, watched and reported."""

    def __init__(self, config: Config, *, own_redis: bool) -> None:
        self.config = config
        self.system = LocalSystem(config, redis=private_redis_of(config) if own_redis else None)
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
            if self.system.redis is not None:
                print(
                    f"its Redis, for the seed's commands and Flower: {self.system.redis_variables()}",
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
        connections); False, said in one line, if that does not happen. The workers are not
        waited for: one that keeps failing is reported on /healthz, and restarted."""
        port = self.config.ws_port
        gateways = running_processes(self.system.gateways)
        try:
            wait_until(
                lambda: self._stopping or self.system.gateways_listening(),
                READY_TIMEOUT_S,
                "the gateway",
                watch=gateways,
            )
        except ChildExited:
            logger.error("a gateway process exited before it listened on port %d (see above)", port)
            return False
        except TimeoutError:
            logger.error("the gateway does not listen on port %d after %.0f s", port, READY_TIMEOUT_S)
            return False
        shared = _sockets_beside(port, {gateway.pid for gateway in gateways})
        if shared and not self._stopping:
            strangers = {pid for pid in listening_pids(port) if socket_inodes(pid) & shared}
            logger.error("%s", _port_taken_by(port, strangers))
            return False
        return True

    def _start_all(self) -> None:
        self.system.start()
        self.config = self.system.config
        redis = self.system.redis
        if isinstance(redis, RedisGroup):
            logger.info(
                "private Redis: a master, %d replicas and %d Sentinels "
                "(REDIS_URL=%s REDIS_SENTINEL_MASTER=%s)",
                self.config.redis_replicas,
                len(redis.sentinels),
                self.config.redis_url,
                self.config.redis_sentinel_master,
            )
        elif redis is not None:
            if self.config.redis_port and redis.port != self.config.redis_port:
                logger.warning(
                    "port %d is taken by another process; the private Redis listens on %d instead, "
                    "for this run (REDIS_PORT sets another)",
                    self.config.redis_port,
                    redis.port,
                )
            logger.info("private Redis on %s, data in %s", redis.url, redis.data_dir)
        self._report = ProblemReport(sync_client(self.config, socket_timeout=1.0, socket_connect_timeout=1.0))
        pid_list.write(self.pids_file, self.system.pids())

    def _watch(self) -> int:
        redis = self.system.redis
        while not self._stopping:
            if isinstance(redis, RedisServer) and redis.process and redis.process.poll() is not None:
                logger.error("the private Redis exited (code %s)", redis.process.returncode)
                return 1
            pids = self.system.pids()
            # A server or Sentinel of the group that died is started again: the Sentinels fail
            # over meanwhile, and make a returning master a replica of the new one.
            if isinstance(redis, RedisGroup):
                redis.restart_exited()
            # Each gateway process is our own child, so each is in the pid list and restarted here.
            for child in self.system.children:
                child.keep_running()
            self._report.publish([child.problem() for child in self.system.children])
            if self.system.pids() != pids:
                pid_list.write(self.pids_file, self.system.pids())
            time.sleep(WATCH_INTERVAL_S)
        return 0

    def _stop_all(self) -> None:
        self._report.close()  # before Redis stops; nothing else writes the report
        self.system.stop()
        with contextlib.suppress(FileNotFoundError):
            self.pids_file.unlink()


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
