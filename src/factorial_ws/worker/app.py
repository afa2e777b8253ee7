"""The Celery app factory and its settings: every process (gateway, worker, bench) builds its
app here from the same ``Config``, so a worker on another machine only needs ``REDIS_URL`` and the
same limits."""

from __future__ import annotations

from typing import Any

from celery import Celery

from ..config import Config
from ..constants import HARD_QUEUE, HARD_TASK_NAME, SOFT_QUEUE, SOFT_TASK_NAME
from .result_backend import backend_class
from .tasks import register_tasks
from .transport import celery_redis_settings, register_transports


def create_app(config: Config) -> Celery:
    register_transports()  # our kombu transports behind the broker URL (transport.py)
    app = Celery("factorial_ws", set_as_current=True)
    app.conf.update(celery_settings(config))
    # Celery's Redis backend, announcing results on the gateways' channel (result_backend.py).
    app.backend_cls = backend_class(app.conf.result_backend)
    register_tasks(app, config)
    return app


def celery_settings(config: Config) -> dict[str, Any]:
    """Celery settings derived from our config; every process uses the same ones."""
    redis_settings = celery_redis_settings(config)
    return redis_settings | {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": config.result_expires_s,
        "task_routes": {
            SOFT_TASK_NAME: {"queue": SOFT_QUEUE},
            HARD_TASK_NAME: {"queue": HARD_QUEUE},
        },
        # A task is acknowledged only once it is done, and goes back to the queue when its
        # worker process dies; the redelivery count below stops one that always kills it.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Unacknowledged tasks are redelivered after this; it must exceed the longest time a
        # task can sit reserved plus run, or a slow task would run twice.
        "broker_transport_options": redis_settings.get("broker_transport_options", {})
        | _transport_options(config),
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # Keep retrying to store a result while Redis is briefly away, instead of losing it.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "redis_backend_health_check_interval": 10,
        "worker_hijack_root_logger": False,
    }


def _transport_options(config: Config) -> dict[str, Any]:
    """kombu's Redis transport: the tasks of a worker that died outright (its main process, so
    nobody rejected them) sit in the ``unacked`` hash until a live worker's sweep restores those
    older than the visibility timeout. kombu sweeps every ``interval * throttle`` seconds, 100 s
    by default; sweep a tenth of the visibility timeout instead (1 to 10 s), so a lost task is
    back in its queue soon after the timeout. A sweep is one ZRANGE per worker, under a lock in
    Redis that expires after 300 s by default: a worker killed while holding it would stop every
    sweep that long, so it expires after one interval (a sweep takes milliseconds)."""
    sweep_interval_s = min(10, max(1, config.visibility_timeout_s // 10))
    return {
        "visibility_timeout": config.visibility_timeout_s,
        "unacked_restore_interval": sweep_interval_s,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": sweep_interval_s,
    }
