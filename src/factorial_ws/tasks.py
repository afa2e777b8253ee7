"""The Celery app, its two factorial tasks, their queues and time limits.

Workers and the gateway build this app from the same ``Config`` (environment variables), so a
worker on another machine only needs ``REDIS_URL`` and the same limits.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import ssl
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import gmpy2
import redis
from celery import Celery, Task, signals

from .config import Config
from .constants import (
    ATTEMPTS_KEY_PREFIX,
    HARD_QUEUE,
    HARD_TASK_NAME,
    SOFT_QUEUE,
    SOFT_TASK_NAME,
    WORKER_HEARTBEAT_S,
    WORKER_STALE_S,
    WORKERS_KEY_PREFIX,
)

logger = logging.getLogger(__name__)

RESULT_REPR_MAX_CHARS = 24  # of a result in the worker's log line


class AttemptsExhausted(Exception):
    """The task was started max_task_attempts times and its worker died every time."""


def factorial_digits(number: int) -> str:
    """n! in decimal. GMP does both the product and the conversion in about n log n time;
    CPython's int-to-str is quadratic (and refused past 4300 digits)."""
    if number < 0:
        raise ValueError("factorial of a negative number")
    return str(gmpy2.fac(number).digits())


def celery_settings(config: Config) -> dict[str, Any]:
    """Celery settings derived from our config; every process uses the same ones."""
    return {
        "broker_url": config.redis_url,
        "result_backend": config.redis_url,
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
        "broker_transport_options": _transport_options(config),
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # Keep retrying to store a result while Redis is briefly away, instead of losing it.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "redis_backend_health_check_interval": 10,
        "worker_hijack_root_logger": False,
        **redis_tls_settings(config.redis_url),
    }


def redis_tls_settings(redis_url: str) -> dict[str, Any]:
    """A ``rediss://`` URL without TLS options of its own verifies the server's certificate
    against the system's CAs, in kombu and Celery's result backend as in redis-py (left alone,
    kombu would not verify at all and the result backend would refuse to start). Options in
    the URL (``?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.pem``) are read by all three."""
    parts = urlsplit(redis_url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return {}
    verify = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return {"broker_use_ssl": verify, "redis_backend_use_ssl": verify}


def _transport_options(config: Config) -> dict[str, Any]:
    """kombu's Redis transport: the tasks of a worker that died outright (its main process, so
    nobody rejected them) sit in the ``unacked`` hash until a live worker's sweep restores those
    older than the visibility timeout. kombu sweeps every ``interval * throttle`` seconds, 100 s
    by default; sweep a tenth of the visibility timeout instead (1 to 10 s), so a lost task is
    back in its queue soon after the timeout. A sweep is one ZRANGE per worker."""
    sweep_interval_s = min(10, max(1, config.visibility_timeout_s // 10))
    return {
        "visibility_timeout": config.visibility_timeout_s,
        "unacked_restore_interval": sweep_interval_s,
        "unacked_restore_throttle": 1,
    }


def create_app(config: Config) -> Celery:
    app = Celery("factorial_ws", set_as_current=True)
    app.conf.update(celery_settings(config))
    _register_tasks(app, config)
    return app


def _register_tasks(app: Celery, config: Config) -> None:
    limits = {
        SOFT_TASK_NAME: config.soft_task_timeout_s,
        HARD_TASK_NAME: config.hard_task_timeout_s,
    }
    for name, time_limit in limits.items():

        def run(task: Task[Any, Any], number: int) -> str:
            _count_attempt(task, config)
            if not 0 <= number <= config.max_number:
                raise ValueError(f"number out of range: {number}")
            return factorial_digits(number)

        # The hard time limit is enforced by the prefork pool killing the process: GMP runs in
        # C, where a soft limit (a Python exception) would never be raised.
        # The worker logs "succeeded in ...: <result repr>"; cut it short so a factorial's
        # digits never fill the log (Celery's default keeps 1024 characters).
        # (celery-types says int; Celery takes float seconds)
        # shared=False: a shared task would be added to every app created later in this
        # process, and win over that app's own task, with the first app's config and limits.
        app.task(  # type: ignore[call-overload]
            name=name,
            shared=False,
            bind=True,
            time_limit=time_limit,
            acks_late=True,
            resultrepr_maxsize=RESULT_REPR_MAX_CHARS,
        )(run)


_redis_clients: dict[str, redis.Redis] = {}


def _redis(url: str) -> redis.Redis:
    """One client per process (pool children are forked, so created lazily after the fork)."""
    if url not in _redis_clients:
        _redis_clients[url] = redis.Redis.from_url(url)
    return _redis_clients[url]


def _count_attempt(task: Task[Any, Any], config: Config) -> None:
    """Redelivered tasks count their starts; past max_task_attempts the task fails for good.
    A first delivery costs nothing, so the common path makes no extra Redis call."""
    if not (task.request.delivery_info or {}).get("redelivered"):
        return
    key = ATTEMPTS_KEY_PREFIX + str(task.request.id)
    client = _redis(config.redis_url)
    pipe = client.pipeline()
    pipe.incr(key)
    pipe.expire(key, config.result_expires_s)
    redeliveries = int(pipe.execute()[0])
    if redeliveries + 1 > config.max_task_attempts:
        raise AttemptsExhausted(f"started {redeliveries + 1} times")


# --- worker process hooks -------------------------------------------------------------------


@signals.worker_process_init.connect
def _die_with_worker(**_: Any) -> None:
    """A pool process must not outlive its worker (kill -9 of the worker would orphan it)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@signals.worker_ready.connect
def _start_heartbeat(sender: Any, **_: Any) -> None:
    """Tell the gateways' health check which queues have a live worker."""
    app = sender.app
    queues = sorted(app.amqp.queues.consume_from or app.amqp.queues)
    client = redis.Redis.from_url(app.conf.broker_url)
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
