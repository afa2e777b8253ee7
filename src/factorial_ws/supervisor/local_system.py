"""The whole system on this machine, the one way it is started: Redis (unless one is given), then
the workers, then the gateway process(es); the environment each child gets; the waits until they
are ready; and the stop in the other order.

`up` keeps these children running on top (restarts, /healthz reports, its pid list); the
benchmark starts it with the workers of a sweep variant; the tests with their settings.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from ..config import Config
from ..constants import HARD_QUEUE, SOFT_QUEUE
from ..redis_clients import sync_client
from ..worker.processes import WORKER_APP, WORKER_STOP_SIGNALS, worker_command, worker_is_live
from .child import SupervisedChild, running_processes
from .gateways import gateway_children, shared_metrics_folder
from .probes import listening_sockets, socket_inodes
from .processes import stop_children, wait_until
from .redis_server import RedisServer, private_redis
from .sentinel import RedisGroup, Timing

READY_TIMEOUT_S = 60.0
# A master silent for 3 s is failed over: quick to try on one machine, and still far above
# the longest command Redis runs here (storing a 5.5 MB result takes milliseconds).
_LOCAL_TIMING = Timing(down_after_ms=3000, failover_timeout_ms=10000)


@dataclass(frozen=True)
class Worker:
    """One Celery worker process of the system."""

    node: str  # its node name before the "@"; also names its log file
    queues: str  # comma-separated
    concurrency: int
    app: str = WORKER_APP
    options: tuple[str, ...] = ()  # more worker options (the bench's sweep variants)

    @property
    def hostname(self) -> str:
        # What Celery's "%h" gives, spelled out, so that its heartbeat can be waited for.
        return f"{self.node}@{socket.gethostname()}"

    def command(self) -> list[str]:
        command = worker_command(
            self.queues, concurrency=self.concurrency, hostname=self.hostname, app=self.app
        )
        return [*command, *self.options]


def queue_workers(config: Config, *, app: str = WORKER_APP, options: tuple[str, ...] = ()) -> list[Worker]:
    """A worker per queue, each with its pool size from ``config``: a flood of large numbers
    cannot delay small ones."""
    return [
        Worker(SOFT_QUEUE, SOFT_QUEUE, config.soft_concurrency, app, options),
        Worker(HARD_QUEUE, HARD_QUEUE, config.hard_concurrency, app, options),
    ]


def private_redis_of(config: Config) -> RedisServer | RedisGroup:
    """The Redis `up` runs when no REDIS_URL is given: one server, or with REDIS_REPLICAS a master,
    its replicas and three Sentinels, in the data folder."""
    if config.redis_replicas:
        folder = config.data_dir / "redis-group"
        return RedisGroup(folder, replicas=config.redis_replicas, timing=_LOCAL_TIMING)
    return private_redis(config)


class LocalSystem:
    """``start()``, then ``wait_ready()``; ``stop()`` at the end, even after a failed start (or
    all three through ``local_system()``).

    ``redis``: the private Redis to start first, which ``config`` is then pointed at; None:
    ``config.redis_url`` is used as it is. ``env``: the environment the children get besides
    ``config`` (``os.environ`` by default). With ``log_dir`` each child's output goes to a file
    there (``<worker node>.log``, ``gateway.log``), else to our terminal."""

    def __init__(
        self,
        config: Config,
        *,
        redis: RedisServer | RedisGroup | None = None,
        workers: Sequence[Worker] | None = None,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.config = config
        self.redis = redis
        self.worker_plan = list(workers) if workers is not None else queue_workers(config)
        self.base_env = dict(os.environ if env is None else env)
        self.log_dir = log_dir
        self.cwd = cwd
        self.workers: list[SupervisedChild] = []
        self.gateways: list[SupervisedChild] = []
        self._shared_metrics: tempfile.TemporaryDirectory[str] | None = None  # of the gateways

    @property
    def children(self) -> list[SupervisedChild]:
        return self.workers + self.gateways

    @property
    def url(self) -> str:
        return self.config.public_url

    def start(self) -> LocalSystem:
        """Redis first (the others connect to it at once), then the workers, then the gateways."""
        if isinstance(self.redis, RedisGroup):
            self.config = self.redis.start().config_for(self.config)
        elif self.redis is not None:
            self.config = self.config.replace(redis_url=self.redis.start().url)
        env = {**self.base_env, **self.config.to_env()}
        self.workers = [
            self._child(f"{plan.node} worker", plan.command(), env, plan.node) for plan in self.worker_plan
        ]
        # Several gateway processes share a metrics folder, so any one of them reports the whole
        # gateway.
        gateway_env = dict(env)
        self._shared_metrics = shared_metrics_folder(self.config, gateway_env)
        gateways = gateway_children(self.config, gateway_env)
        self.gateways = [
            self._child(child.name, child.command, gateway_env, "gateway" if i == 1 else f"gateway-{i}")
            for i, child in enumerate(gateways, 1)
        ]
        for child in self.children:
            child.start()
        return self

    def _child(self, name: str, command: list[str], env: dict[str, str], log_name: str) -> SupervisedChild:
        log_path = self.log_dir / f"{log_name}.log" if self.log_dir is not None else None
        return SupervisedChild(
            name,
            command,
            env,
            log_path=log_path,
            cwd=self.cwd,
            first_restart_delay_s=self.config.restart_delay_s,
        )

    def workers_live(self, client: redis.Redis) -> bool:
        """Each worker has a fresh heartbeat on each of its queues (in the Redis of ``client``)."""
        return all(worker_is_live(client, w.hostname, w.queues.split(",")) for w in self.worker_plan)

    def gateways_listening(self) -> bool:
        """Each gateway process listens on the port (one on the port is not enough: with several,
        a connection could reach one that does not serve yet)."""
        sockets = listening_sockets(self.config.ws_port).keys()
        return all(socket_inodes(process.pid) & sockets for process in running_processes(self.gateways))

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once the workers take tasks and the gateways serve; ChildExited as soon as
        one of them exits, TimeoutError after ``timeout_s``."""
        processes = running_processes(self.children)
        with contextlib.closing(sync_client(self.config)) as client:
            wait_until(lambda: self.workers_live(client), timeout_s, "the workers", watch=processes)
        wait_until(self.gateways_listening, timeout_s, "the gateway", watch=processes)

    def stop(self) -> None:
        """Gateways first (clients get 1001), then workers (a warm shutdown, then a cold one that
        hands back the tasks still running), then Redis, each within a grace."""
        stop_children(running_processes(self.gateways))
        if self._shared_metrics is not None:
            self._shared_metrics.cleanup()
        stop_children(running_processes(self.workers), signals=WORKER_STOP_SIGNALS)
        if self.redis is not None:
            self.redis.stop()

    def pids(self) -> list[int]:
        """Every process of the system running now: children, then Redis."""
        pids = [child.pid for child in self.children if child.pid is not None]
        if isinstance(self.redis, RedisGroup):
            pids += [process.pid for process in self.redis.processes()]
        elif self.redis is not None and self.redis.process is not None:
            pids.append(self.redis.process.pid)
        return pids

    def redis_variables(self) -> str:
        """The variables that point a process at this Redis, as a line to paste into a shell."""
        config = self.config
        variables = {"REDIS_URL": config.redis_url, "REDIS_SENTINEL_MASTER": config.redis_sentinel_master}
        return " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items() if value)


@contextlib.contextmanager
def local_system(
    config: Config,
    *,
    redis: RedisServer | RedisGroup | None = None,
    workers: Sequence[Worker] | None = None,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[LocalSystem]:
    """The system of ``config`` (see ``LocalSystem``) started and ready for the block, stopped
    after it."""
    system = LocalSystem(config, redis=redis, workers=workers, env=env, log_dir=log_dir)
    try:
        system.start().wait_ready()
        yield system
    finally:
        system.stop()
