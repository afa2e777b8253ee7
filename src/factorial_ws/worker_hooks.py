"""Hooks of worker processes only (the gateway never imports this): pool processes die with
their worker, and a heartbeat tells the gateways' health check which queues have a live worker."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import redis
from celery import signals

from .constants import WORKER_HEARTBEAT_S, WORKER_STALE_S, WORKERS_KEY_PREFIX
from .processes import set_parent_death_signal
from .redis_clients import sync_client

logger = logging.getLogger(__name__)


@signals.worker_process_init.connect
def _die_with_worker(**_: Any) -> None:
    """A pool process must not outlive its worker (kill -9 of the worker would orphan it)."""
    set_parent_death_signal(signal.SIGKILL)


@signals.worker_ready.connect
def _start_heartbeat(sender: Any, **_: Any) -> None:
    """Tell the gateways' health check which queues have a live worker."""
    app = sender.app
    queues = sorted(app.amqp.queues.consume_from or app.amqp.queues)
    from .worker import config  # the worker's own settings (its module imports this one)

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
