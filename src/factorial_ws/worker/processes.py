"""Worker processes as the rest of the system runs them: the command that starts one, the
signals that stop one, and whether one is live (its heartbeat, which ``hooks.py`` writes)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterable

import redis

from ..constants import WORKER_STALE_S, WORKERS_KEY_PREFIX

# The Celery app a worker process loads: `celery -A` finds it in ``celery.py``, which also
# registers the worker-only hooks.
WORKER_APP = "factorial_ws.worker"
# Gossip and mingle are Celery's worker-to-worker chatter over Redis pub/sub; nothing here uses
# them (`factorial-ws bench --sweep` measured gossip, mingle and heartbeat together at 5-10% of
# tasks/s). The event heartbeat stays on: Flower lists workers from it, and without it a worker
# has no event dispatcher, so `celery control enable_events` cannot switch task events on. It
# is one event every 2 s: within the noise per task, under 0.5% of a core when idle (measured).
QUIET_WORKER_OPTIONS = ("--without-gossip", "--without-mingle")
# How a Celery worker is stopped: SIGTERM, a warm shutdown (it takes no new task and lets the
# running ones finish), then SIGQUIT, a cold one (it cancels the tasks still running and hands
# them back to their queues at once; after SIGKILL they would wait out the visibility timeout).
WORKER_STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT)


def worker_command(
    queues: str,
    *,
    concurrency: int | None = None,
    hostname: str | None = None,
    log_level: str = "INFO",
    app: str = WORKER_APP,
) -> list[str]:
    """A Celery prefork worker consuming ``queues`` (comma-separated)."""
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker", "--pool=prefork", "-Q", queues,
        f"--loglevel={log_level}", *QUIET_WORKER_OPTIONS,
    ]  # fmt: skip
    if concurrency:
        command.append(f"--concurrency={concurrency}")
    if hostname:
        command += ["-n", hostname]
    return command


def worker_is_live(client: redis.Redis, hostname: str, queues: Iterable[str]) -> bool:
    """True once the worker ``hostname`` has a fresh heartbeat on every one of ``queues``."""
    since = time.time() - WORKER_STALE_S
    return all((client.zscore(WORKERS_KEY_PREFIX + q, hostname) or 0) >= since for q in queues)
