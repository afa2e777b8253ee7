"""Hooks of worker processes only (the gateway never imports this), installed by ``worker.py``
for its config: a worker whose pool cannot enforce time limits says so, pool processes die with
their worker, a heartbeat tells the gateways' health check which queues have a live worker, and
a worker shutting down marks the tasks it hands back so that their next start is not counted as
a death (tasks.py)."""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from typing import Any

import redis
from celery import signals
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.worker import state

from .config import Config
from .constants import WORKER_HEARTBEAT_S, WORKER_STALE_S, WORKERS_KEY_PREFIX
from .processes import set_parent_death_signal
from .redis_clients import sync_client
from .tasks import mark_handed_back

logger = logging.getLogger(__name__)


def install(config: Config) -> None:
    """Connect the hooks for a worker that runs with ``config``."""
    # weak=False: Celery keeps weak references to receivers by default, and a partial has no
    # other owner.
    signals.celeryd_after_setup.connect(_warn_without_time_limits, weak=False)
    signals.worker_process_init.connect(_die_with_worker, weak=False)
    signals.worker_ready.connect(functools.partial(_start_heartbeat, config), weak=False)
    signals.worker_shutting_down.connect(functools.partial(_mark_tasks_held, config), weak=False)


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
    while True:
        now = time.time()
        try:
            pipe = client.pipeline(transaction=False)
            for queue in queues:
                key = WORKERS_KEY_PREFIX + queue
                pipe.zadd(key, {hostname: now})
                pipe.zremrangebyscore(key, 0, now - WORKER_STALE_S * 4)
            pipe.execute()
        except redis.RedisError:
            logger.debug("heartbeat failed", exc_info=True)
        time.sleep(WORKER_HEARTBEAT_S)
