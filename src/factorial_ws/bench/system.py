"""The system under test: the local system as `factorial-ws up` starts it (supervisor's
``local_system``), with the worker settings of a sweep variant."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..supervisor.local_system import local_system, queue_workers
from ..supervisor.probes import free_port
from ..supervisor.redis_server import RedisServer
from ..worker.processes import WORKER_APP

SETTINGS_VARIABLE = "FACTORIAL_WS_BENCH_CELERY"  # Celery overrides for the sweep's workers


@dataclass(frozen=True)
class Variant:
    """Worker settings for the sweep: Celery settings, worker options, soft pool size."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    worker_args: tuple[str, ...] = ()
    concurrency: int | None = None


SHIPPED = Variant("shipped settings")
_QUIET = ("--without-gossip", "--without-mingle", "--without-heartbeat")
_CELERY_DEFAULTS: dict[str, Any] = {"acks_late": False, "worker_prefetch_multiplier": 4}
_RELIABLE: dict[str, Any] = {"worker_prefetch_multiplier": 1}
VARIANTS = (
    Variant("Celery defaults: early ack, prefetch 4, gossip/mingle/heartbeat", _CELERY_DEFAULTS),
    Variant("late ack, prefetch 1", _RELIABLE),
    Variant("late ack, prefetch 4", {"worker_prefetch_multiplier": 4}),
    Variant("late ack, prefetch 1, without gossip/mingle/heartbeat", _RELIABLE, _QUIET),
    Variant("late ack, prefetch 1, events on (-E)", _RELIABLE, ("-E",)),
    Variant("late ack, prefetch 1, soft pool of 1", _RELIABLE, (), 1),
    Variant("late ack, prefetch 1, soft pool of 4", _RELIABLE, (), 4),
    Variant("early ack, prefetch 4, without gossip/mingle/heartbeat", _CELERY_DEFAULTS, _QUIET),
)


@dataclass
class System:
    """The gateway URL and Redis URL the bench talks to, and what it may control."""

    url: str
    redis_url: str
    gateway_pid: int | None = None
    soft_worker: subprocess.Popen[bytes] | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path | None = None  # where the private system's processes write their logs


@contextlib.contextmanager
def private_system(config: Config, work_dir: Path, variant: Variant | None = None) -> Iterator[System]:
    """The local system (a private Redis, a soft and a hard worker, the gateway) with the workers
    of ``variant``, stopped at the end."""
    variant = variant or SHIPPED
    # Without result reuse, every request is computed, as with raw Celery: the comparisons stay
    # honest (scenario 6 starts a gateway of its own that reuses results).
    config = config.replace(ws_host="127.0.0.1", ws_port=free_port(), ws_processes=1, result_reuse=False)
    if variant.concurrency:
        config = config.replace(soft_concurrency=variant.concurrency)
    app = "factorial_ws.bench.celery_app" if variant.overrides else WORKER_APP
    env = {**os.environ, "PYTHONUNBUFFERED": "1", SETTINGS_VARIABLE: json.dumps(variant.overrides)}
    logs = work_dir / "logs"
    workers = queue_workers(config, app=app, options=variant.worker_args)
    redis = RedisServer(work_dir / "redis")
    with local_system(config, redis=redis, workers=workers, env=env, log_dir=logs) as system:
        gateway, soft = system.gateways[0].process, system.workers[0].process
        assert gateway is not None and soft is not None
        processes = [child.process for child in system.children if child.process is not None]
        yield System(system.url, system.config.redis_url, gateway.pid, soft, processes, logs)
