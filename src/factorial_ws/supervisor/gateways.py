"""Several gateway processes on one port (SO_REUSEPORT), when ``WS_PROCESSES`` asks for more
than one: this process starts them, starts again one that dies, stops them on SIGTERM or SIGINT,
and takes them with it when it dies (their parent-death signal is SIGKILL)."""

from __future__ import annotations

import os
import signal
import time

from ..config import Config
from ..gateway.server import run_gateway
from ..processes import gateway_command, stop_children
from .child import SupervisedChild, running_processes

WATCH_INTERVAL_S = 0.2


def gateway_children(config: Config, env: dict[str, str]) -> list[SupervisedChild]:
    """The gateway processes of ``config``: one that serves alone, or each of several serving
    alone (``--processes 1``) on a shared port (``--reuse-port``)."""
    if config.gateway_processes == 1:
        return [SupervisedChild("gateway", gateway_command("--processes", "1"), env)]
    command = gateway_command("--processes", "1", "--reuse-port")
    return [SupervisedChild("gateway process", command, env) for _ in range(config.gateway_processes)]


def run_gateways(config: Config, *, reuse_port: bool = False) -> int:
    """Run ``config.gateway_processes`` gateway processes sharing one port; return an exit code.
    ``reuse_port``: this is one of them (started with ``--processes 1 --reuse-port``)."""
    if config.gateway_processes == 1:
        run_gateway(config, reuse_port=reuse_port)
        return 0
    children = gateway_children(config, {**os.environ, **config.to_env()})
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start()
    try:
        while not stopping:
            if not all([child.keep_running() for child in children]):
                return 1
            time.sleep(WATCH_INTERVAL_S)
        return 0
    finally:
        stop_children(running_processes(children))
