"""Several gateway processes on one port (SO_REUSEPORT), when ``WS_PROCESSES`` asks for more
than one: this process starts them, starts again one that dies, stops them on SIGTERM or SIGINT,
and takes them with it when it dies (their parent-death signal is SIGKILL). They share a metrics
folder, so any one of them reports the whole gateway."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from ..config import Config
from ..gateway import metrics
from ..gateway.server import run_gateway
from .child import SupervisedChild, running_processes
from .pid_list import start_ticks
from .probes import stat_fields
from .processes import stop_children

WATCH_INTERVAL_S = 0.2
# A shared metrics folder is named by its owner: <prefix><pid>-<start ticks>-<random>.
_METRICS_FOLDER_PREFIX = "factorial-ws-metrics-"
_METRICS_FOLDER_OWNER = re.compile(re.escape(_METRICS_FOLDER_PREFIX) + r"(\d+)-(\d+)-")


def gateway_command(*args: str) -> list[str]:
    """The command of one gateway process: ``factorial-ws serve`` with ``args``."""
    return [sys.executable, "-m", "factorial_ws", "serve", *args]


def gateway_children(config: Config, env: dict[str, str]) -> list[SupervisedChild]:
    """The gateway processes of ``config``: one that serves alone, or each of several serving
    alone (``--processes 1``) on a shared port (``--reuse-port``)."""
    delay_s = config.restart_delay_s
    if config.gateway_processes == 1:
        command = gateway_command("--processes", "1")
        return [SupervisedChild("gateway", command, env, first_restart_delay_s=delay_s)]
    command = gateway_command("--processes", "1", "--reuse-port")
    return [
        SupervisedChild("gateway process", command, env, first_restart_delay_s=delay_s)
        for _ in range(config.gateway_processes)
    ]


def shared_metrics_folder(config: Config, env: dict[str, str]) -> tempfile.TemporaryDirectory[str] | None:
    """With several gateway processes: a new folder where they keep their metrics (see metrics),
    set in ``env`` for them, unless ``env`` names one already. Its owner removes it
    (``cleanup()``) once they have exited. The counters of a process that died (and was started
    again) stay in the sums; its gauges drop out."""
    remove_orphaned_metrics_folders(Path(tempfile.gettempdir()))
    if config.gateway_processes == 1 or env.get(metrics.MULTIPROCESS_DIR_VARIABLE):
        return None
    pid = os.getpid()
    folder = tempfile.TemporaryDirectory(prefix=f"{_METRICS_FOLDER_PREFIX}{pid}-{start_ticks(pid)}-")
    env[metrics.MULTIPROCESS_DIR_VARIABLE] = folder.name
    return folder


def remove_orphaned_metrics_folders(parent: Path) -> None:
    """Remove our metrics folders in ``parent`` whose owner is gone: one killed outright (SIGKILL)
    cannot remove its own. Its gateway processes died with it (their parent-death signal), so
    nothing writes there any more. The owner is its pid and start time, from the folder's name:
    a later process that got the same pid is not taken for it."""
    for folder in parent.glob(f"{_METRICS_FOLDER_PREFIX}*"):
        owner = _METRICS_FOLDER_OWNER.match(folder.name)
        if owner is None or _running(int(owner[1]), int(owner[2])):
            continue
        with contextlib.suppress(OSError):
            if folder.stat().st_uid == os.getuid():
                shutil.rmtree(folder)


def _running(pid: int, ticks: int) -> bool:
    """The process that started at ``ticks`` still runs: not gone, not another with its pid, and
    not a zombie (dead, only not yet waited for by its parent)."""
    try:
        return start_ticks(pid) == ticks and stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def run_gateways(config: Config, *, reuse_port: bool = False) -> int:
    """Run ``config.gateway_processes`` gateway processes sharing one port; return an exit code.
    ``reuse_port``: this is one of them (started with ``--processes 1 --reuse-port``)."""
    if config.gateway_processes == 1:
        run_gateway(config, reuse_port=reuse_port)
        return 0
    env = {**os.environ, **config.to_env()}
    shared_metrics = shared_metrics_folder(config, env)
    children = gateway_children(config, env)
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
            for child in children:
                child.keep_running()
            time.sleep(WATCH_INTERVAL_S)
        return 0
    finally:
        stop_children(running_processes(children))
        if shared_metrics is not None:
            shared_metrics.cleanup()
