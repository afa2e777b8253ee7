"""The system under test: a private Redis, a soft and a hard worker and the gateway as processes
(as `factorial-ws up` runs them), with the worker settings of a sweep variant."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from ..config import Config
from ..constants import HARD_QUEUE, QUEUES, SOFT_QUEUE
from ..supervisor.gateways import gateway_command
from ..supervisor.probes import free_port, port_open
from ..supervisor.processes import start_child, stop_child, wait_until
from ..supervisor.redis_server import RedisServer
from ..worker.processes import WORKER_APP, live_workers, worker_command

SETTINGS_VARIABLE = "FACTORIAL_WS_BENCH_CELERY"  # Celery overrides for the sweep's workers
_START_TIMEOUT_S = 60.0


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


def _worker_command(queue: str, concurrency: int, variant: Variant) -> list[str]:
    app = "factorial_ws.bench.celery_app" if variant.overrides else WORKER_APP
    return [
        *worker_command(queue, concurrency=concurrency, hostname=f"{queue}@%h", app=app),
        *variant.worker_args,
    ]


@contextlib.contextmanager
def private_system(config: Config, work_dir: Path, variant: Variant | None = None) -> Iterator[System]:
    """Redis, a soft and a hard worker, and the gateway as processes, stopped at the end."""
    variant = variant or SHIPPED
    logs = work_dir / "logs"
    processes: list[subprocess.Popen[bytes]] = []
    with RedisServer(work_dir / "redis") as server:
        try:
            port = free_port()
            # Without result reuse, every request is computed, as with raw Celery: the comparisons
            # stay honest (scenario 6 starts a gateway of its own that reuses results).
            config = config.replace(
                redis_url=server.url, ws_host="127.0.0.1", ws_port=port, ws_processes=1, result_reuse=False
            )
            if variant.concurrency:
                config = config.replace(soft_concurrency=variant.concurrency)
            env = {**os.environ, **config.to_env(), "PYTHONUNBUFFERED": "1"}
            env[SETTINGS_VARIABLE] = json.dumps(variant.overrides)
            soft_command = _worker_command(SOFT_QUEUE, config.soft_concurrency, variant)
            hard_command = _worker_command(HARD_QUEUE, config.hard_concurrency, variant)
            soft = start_child(soft_command, env, log_path=logs / "soft.log")
            processes += [soft, start_child(hard_command, env, log_path=logs / "hard.log")]
            gateway = start_child(gateway_command(), env, log_path=logs / "gateway.log")
            processes.append(gateway)
            with redis.Redis.from_url(server.url) as client:
                wait_until(
                    lambda: all(live_workers(client, q) for q in QUEUES),
                    _START_TIMEOUT_S,
                    "workers",
                    watch=processes,
                )
            wait_until(lambda: port_open(port), _START_TIMEOUT_S, "the gateway", watch=processes)
            yield System(f"ws://127.0.0.1:{port}/", server.url, gateway.pid, soft, processes, logs)
        finally:
            for process in reversed(processes):
                stop_child(process, grace_s=15)
