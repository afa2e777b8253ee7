"""Hooks of worker processes only (the gateway never imports this), installed by ``celery.py``
for its config: a worker whose pool cannot enforce time limits says so, pool processes die with
their worker, a heartbeat tells the gateways' health check which queues have a live worker, a
worker shutting down marks the tasks it hands back so that their next start is not counted as
a death (tasks.py), a task whose message asks for progress stores Celery's STARTED state, a
task records which worker run computes it (so the gateways tell a computation lost with its
worker, ``RunningTasks``), and cancelled tasks stay revoked in a worker that missed the
gateway's revoke broadcast (``CancelledTasks``)."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import signal
import threading
import time
import uuid
from typing import Any

import redis
from celery import Celery, Task, bootsteps, signals, states
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.worker import state

from ..config import Config
from ..constants import (
    CANCELLED_KEY,
    CANCELLED_RELOAD_S,
    PROGRESS_HEADER,
    REPLACES_KEY_PREFIX,
    RUNNING_KEY_PREFIX,
    WORKER_HEARTBEAT_S,
    WORKER_RUN_BEAT_S,
    WORKER_RUN_KEY_PREFIX,
    WORKER_RUN_LEASE_S,
    WORKER_STALE_S,
    WORKERS_KEY_PREFIX,
)
from ..redis_clients import sync_client
from ..supervisor.processes import set_parent_death_signal
from .tasks import mark_handed_back, process_client

logger = logging.getLogger(__name__)


def install(app: Celery, config: Config) -> None:
    """Connect the hooks for a worker of ``app`` that runs with ``config``."""
    # weak=False: Celery keeps weak references to receivers by default, and a partial has no
    # other owner.
    signals.celeryd_after_setup.connect(_warn_without_time_limits, weak=False)
    signals.worker_process_init.connect(_die_with_worker, weak=False)
    signals.worker_ready.connect(functools.partial(_start_heartbeat, config), weak=False)
    signals.worker_shutting_down.connect(functools.partial(_mark_tasks_held, config), weak=False)
    signals.task_prerun.connect(_report_started, weak=False)
    running = RunningTasks(config)
    signals.task_prerun.connect(running.started, weak=False)
    signals.task_postrun.connect(running.ended, weak=False)

    class CancelledTasksOfThisConfig(CancelledTasks):
        worker_config = config

    app.steps["consumer"].add(CancelledTasksOfThisConfig)


def _warn_without_time_limits(instance: Any, **_: Any) -> None:
    """Only the prefork pool enforces a time limit, by killing the task's process: the thread
    and solo pools (which the seed also uses) cannot stop a task, least of all one in GMP's C."""
    pool = instance.pool_cls
    if isinstance(pool, type) and issubclass(pool, PreforkPool):
        return
    name = pool.__module__.rsplit(".", 1)[-1] if isinstance(pool, type) else str(pool)
    logger.warning(
        "the %s pool cannot enforce the task time limits (SOFT_TASK_TIMEOUT, HARD_TASK_TIMEOUT): "
        "a task runs as long as it takes, and its client gets 'Timeout error' after "
        "HARD_TASK_TIMEOUT; use --pool=prefork to enforce them",
        name,
    )


def _die_with_worker(**_: Any) -> None:
    """A pool process must not outlive its worker (kill -9 of the worker would orphan it)."""
    set_parent_death_signal(signal.SIGKILL)


def _mark_tasks_held(config: Config, **_: Any) -> None:
    """At SIGTERM (warm shutdown) and SIGQUIT (cold): the tasks this worker holds go back to
    their queue marked redelivered, either now or, if it is killed, after the visibility timeout.
    Runs in the worker's main process, where Celery tracks its requests."""
    requests = [*state.active_requests, *state.reserved_requests]
    mark_handed_back(config, {request.id for request in requests})


def _start_heartbeat(config: Config, sender: Any, **_: Any) -> None:
    """Tell the gateways' health check which queues have a live worker."""
    app = sender.app
    queues = sorted(app.amqp.queues.consume_from or app.amqp.queues)
    client = sync_client(config)
    hostname = sender.hostname
    thread = threading.Thread(target=_beat, args=(client, hostname, queues), name="heartbeat", daemon=True)
    thread.start()


def _beat(client: redis.Redis, hostname: str, queues: list[str]) -> None:
    """The queues' heartbeat every WORKER_HEARTBEAT_S, this run's lease every WORKER_RUN_BEAT_S."""
    beats_per_heartbeat = round(WORKER_HEARTBEAT_S / WORKER_RUN_BEAT_S)
    for beat in itertools.count():
        now = time.time()
        try:
            pipe = client.pipeline(transaction=False)
            pipe.set(WORKER_RUN_KEY_PREFIX + WORKER_RUN_ID, hostname, px=int(WORKER_RUN_LEASE_S * 1000))
            if beat % beats_per_heartbeat == 0:
                for queue in queues:
                    key = WORKERS_KEY_PREFIX + queue
                    pipe.zadd(key, {hostname: now})
                    pipe.zremrangebyscore(key, 0, now - WORKER_STALE_S * 4)
            pipe.execute()
        except redis.RedisError:
            logger.debug("heartbeat failed", exc_info=True)
        time.sleep(WORKER_RUN_BEAT_S)


def _report_started(task: Task[Any, Any], task_id: str, **_: Any) -> None:
    """Store (and so publish) Celery's STARTED state for a task whose message asked for it, as
    ``task_track_started`` would for every task: a task that did not ask costs nothing."""
    if task.request.get(PROGRESS_HEADER):
        meta = {"pid": os.getpid(), "hostname": task.request.hostname}
        task.backend.store_result(task_id, meta, states.STARTED, request=task.request)


# This start of the worker: its pool processes, forked from it, inherit the id. The hostname
# would not do: a worker restarted under the same name (``up`` does) beats for it again at once.
WORKER_RUN_ID = uuid.uuid4().hex


class RunningTasks:
    """Which worker run computes each task, for the gateways' result reuse (gateway/submit.lua): a task
    started by a run whose heartbeat is gone (SIGKILL of the worker, a lost machine) is lost
    until the visibility timeout hands its message out again, so a request for its number gets
    a new task instead of joining it. The new task then also stores its result under the ids of
    the tasks it replaced (``REPLACES_KEY_PREFIX``, written by the gateway's script), so whoever
    waited for those gets it too. A lost task delivered again later computes and stores the
    same result: harmless.

    Costs one SET when a task starts and one round trip when it ends, in the pool process; a
    failed write only loses the early detection (the visibility timeout still recovers)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        # Until the lost message can be redelivered, and it runs to its time limit.
        self._record_s = config.visibility_timeout_s + int(config.hard_task_timeout_s) + 1

    def started(self, task_id: str, **_: Any) -> None:
        try:
            process_client(self._config).set(RUNNING_KEY_PREFIX + task_id, WORKER_RUN_ID, ex=self._record_s)
        except redis.RedisError:
            logger.debug("could not record the start of task %s", task_id, exc_info=True)

    def ended(
        self, task: Task[Any, Any], task_id: str, retval: Any = None, state: str = "", **_: Any
    ) -> None:
        try:
            pipe = process_client(self._config).pipeline(transaction=False)
            pipe.delete(RUNNING_KEY_PREFIX + task_id)
            pipe.get(REPLACES_KEY_PREFIX + task_id)
            replaced: bytes | None = pipe.execute()[1]
            if state == states.SUCCESS and replaced:
                for lost_id in replaced.decode().split():
                    task.backend.store_result(lost_id, retval, states.SUCCESS)
        except redis.RedisError:
            logger.debug("could not record the end of task %s", task_id, exc_info=True)


class CancelledTasks(bootsteps.StartStopStep):
    """A consumer step that puts the ids of cancelled tasks (the gateway's ``CANCELLED_KEY``)
    into this worker's set of revoked tasks, which Celery checks when a task arrives and again
    before it runs.

    A live worker learns of a cancel from the gateway's revoke broadcast, but keeps it in memory
    only: one that starts (or restarts) later, or whose broker connection was down when the
    broadcast went out, would run a cancelled task still in its queue. So every consumer start
    (after a connection loss too) loads the whole set, and every CANCELLED_RELOAD_S the entries
    added since; in the event loop, so no thread touches Celery's state. Tasks cost nothing:
    only this one query per interval per worker. The gateway writes the set before it
    broadcasts, so a worker that was not listening yet reads it at its next load.

    It also replaces a pool process killed to stop a cancelled task at once. Celery replaces a
    process when its exit wakes the event loop, but the kernel closes a dying process's pipes
    before its exit status can be collected: woken in between, Celery finds it still running,
    and only its 5 s timer replaces it (seen: the next task waited 2.8 and 4.4 s). So after a
    termination the pool is checked again a few times within the first second."""

    requires = ("celery.worker.consumer.control:Control",)
    worker_config: Config | None = None  # set by ``install``
    # Reloads overlap by this much, so that entries of gateways whose clocks lag are not missed.
    _OVERLAP_S = 60.0
    # When the pool is checked again after one of its processes was killed for a revoke.
    _REPLACE_AFTER_S = (0.02, 0.1, 0.3, 0.7)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._client: redis.Redis | None = None
        self._since = float("-inf")
        self._timer_entry: Any = None
        self._consumer: Any = None

    def start(self, consumer: Any) -> None:
        assert self.worker_config is not None
        self._client = sync_client(self.worker_config, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._since = float("-inf")
        self._load()
        self._timer_entry = consumer.timer.call_repeatedly(CANCELLED_RELOAD_S, self._load)
        self._consumer = consumer
        signals.task_revoked.connect(self._on_revoked, weak=False)

    def stop(self, consumer: Any) -> None:
        signals.task_revoked.disconnect(self._on_revoked)
        self._consumer = None
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None
        if self._client is not None:
            self._client.close()
            self._client = None

    shutdown = stop

    def _load(self) -> None:
        if self._client is None:
            return
        try:
            entries: list[tuple[bytes, float]] = self._client.zrangebyscore(  # type: ignore[assignment]
                CANCELLED_KEY, self._since, "+inf", withscores=True
            )
        except redis.RedisError:
            logger.debug("could not read the cancelled tasks", exc_info=True)
            return  # the next load reads them; the consumer reconnects meanwhile
        if entries:
            state.revoked.update(task_id.decode() for task_id, _ in entries)
            self._since = max(score for _, score in entries) - self._OVERLAP_S

    def _on_revoked(self, terminated: bool = False, **_: Any) -> None:
        """In the worker's main process, when a task was revoked (``terminated``: its process
        was killed)."""
        consumer = self._consumer
        if terminated and consumer is not None:
            for delay_s in self._REPLACE_AFTER_S:
                consumer.timer.call_after(delay_s, self._replace_dead_processes)

    def _replace_dead_processes(self) -> None:
        pool = getattr(self._consumer.pool, "_pool", None) if self._consumer is not None else None
        if pool is not None:
            pool.maintain_pool()  # what Celery's own timer calls every 5 s
