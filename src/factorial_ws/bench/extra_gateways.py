"""Gateways that scenarios start of their own, beside the system's: one that reuses results (the
crowd of scenario 6), one with no worker and no limit (the acks of scenario 7); scenario 9's,
with a catalog, is in ``catalog_task``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..config import Config
from ..supervisor.gateways import gateway_command
from ..supervisor.probes import free_port, port_open
from ..supervisor.processes import start_child, stop_child, wait_until
from ..supervisor.redis_server import RedisServer
from .system import System

_CROWD_PATIENCE_S = 600.0


@contextlib.contextmanager
def reusing_gateway(system: System, config: Config) -> Iterator[tuple[str, int | None]]:
    """A gateway with RESULT_REUSE=1 on the system's Redis (the bench's own runs with reuse off,
    so that every request is computed, as with raw Celery); a running system as it is."""
    if system.log_dir is None:
        yield system.url, system.gateway_pid
        return
    reusing = config.replace(
        redis_url=system.redis_url,
        result_reuse=True,
        # The crowd's processes share the machine's cores with the gateway and the workers, so
        # each of its connections reads far slower than a client of its own would: the gateway
        # must not drop them as slow consumers (nor time their keepalive pongs out) meanwhile.
        slow_consumer_timeout_s=_CROWD_PATIENCE_S,
        ping_timeout_s=_CROWD_PATIENCE_S,
    )
    with extra_gateway(reusing, system.log_dir / "gateway-reuse.log") as (url, pid):
        yield url, pid


@contextlib.contextmanager
def extra_gateway(config: Config, log_path: Path, cwd: Path | None = None) -> Iterator[tuple[str, int]]:
    """One more gateway process with ``config``, on a port of its own (run in ``cwd``, where its
    TASKS catalog is importable from); its URL and pid."""
    port = free_port()
    config = config.replace(ws_host="127.0.0.1", ws_port=port, ws_processes=1)
    env = {**os.environ, **config.to_env()}
    gateway = start_child(gateway_command(), env, log_path=log_path, cwd=cwd)
    try:
        wait_until(lambda: port_open(port), 60, f"the gateway of {log_path.name}", watch=[gateway])
        yield f"ws://127.0.0.1:{port}/", gateway.pid
    finally:
        stop_child(gateway)


# Limits of the workerless gateway of scenario 7, high enough never to refuse: its ceiling is
# what is measured, not its protection against one flooding client.
_UNLIMITED = 10**9
# The acks scenario's tasks never run: its gateway must not answer them "Timeout error" (after
# HARD_TASK_TIMEOUT) while a round on a slow machine still counts replies.
_NEVER_S = 3600.0


@contextlib.contextmanager
def workerless_gateway(config: Config, log_dir: Path) -> Iterator[tuple[str, int, str]]:
    """A gateway on an empty Redis of its own (no worker, nothing persisted, so the disk is not
    measured), with reuse off and no limit that would refuse: its URL, pid and Redis URL."""
    with (
        tempfile.TemporaryDirectory(prefix="factorial-ws-acks-") as work,
        RedisServer(Path(work), persistent=False) as server,
    ):
        workerless = config.replace(
            redis_url=server.url,
            result_reuse=False,
            rate_limit_per_s=float(_UNLIMITED),
            rate_limit_burst=_UNLIMITED,
            max_tasks_in_flight=_UNLIMITED,
            hard_task_timeout_s=_NEVER_S,
        )
        with extra_gateway(workerless, log_dir / "gateway-acks.log") as (url, pid):
            yield url, pid, server.url
