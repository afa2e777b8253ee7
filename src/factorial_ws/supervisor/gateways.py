"""Several gateway processes on one port (SO_REUSEPORT), when ``WS_PROCESSES`` asks for more
than one: this process starts them, forwards SIGTERM and SIGINT, and waits for them."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile

from .. import metrics
from ..config import Config
from ..gateway.server import run_gateway
from ..processes import gateway_command, start_child


def run_gateways(config: Config, *, reuse_port: bool = False) -> int:
    """Run ``config.gateway_processes`` gateway processes sharing one port; return an exit code.
    ``reuse_port``: this is one of them (started with ``--processes 1 --reuse-port``)."""
    if config.gateway_processes == 1:
        run_gateway(config, reuse_port=reuse_port)
        return 0
    env = {**os.environ, **config.to_env()}
    # Where the children keep their metrics, so any one of them reports the whole gateway.
    shared_metrics = tempfile.TemporaryDirectory(prefix="factorial-ws-metrics-")
    env.setdefault(metrics.MULTIPROCESS_DIR_VARIABLE, shared_metrics.name)
    children = [
        # Each child serves alone (--processes 1) but on a shared port (--reuse-port).
        start_child(gateway_command("--processes", "1", "--reuse-port"), env)
        for _ in range(config.gateway_processes)
    ]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    shared_metrics.cleanup()
    return 0 if stopping or not any(codes) else 1
