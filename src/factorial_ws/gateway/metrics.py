"""Prometheus metrics of the gateway, summed over all its processes.

A gateway of several processes (``WS_PROCESSES`` > 1) shares one port, so a scrape reaches any
one of them. Its parent process therefore gives them a shared folder,
``PROMETHEUS_MULTIPROC_DIR``, where prometheus-client's multiprocess mode keeps each process's
values in a memory-mapped file; ``render`` sums them. Counters of a process that has exited stay
in the sum (totals do not drop when a process is restarted); gauges count live processes only.
A single process keeps its values in memory, as usual.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from ..supervisor.probes import stat_fields

# Read by prometheus-client when it is imported: the variable must be set before the process
# starts (the multi-process gateway sets it for its children).
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# The classic text format, which generate_latest writes and every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The `*_created` timestamp series double the output and tell an operator nothing here.
disable_created_metrics()  # type: ignore[no-untyped-call]

registry = CollectorRegistry(auto_describe=True)

connections_open = Gauge(
    "factorial_ws_connections_open",
    "Open WebSocket connections.",
    registry=registry,
    multiprocess_mode="livesum",
)
requests_total = Counter(
    "factorial_ws_requests_total", "Requests received, by type.", ["type"], registry=registry
)
errors_total = Counter(
    "factorial_ws_errors_total", "Error replies sent, by message.", ["message"], registry=registry
)
tasks_submitted_total = Counter(
    "factorial_ws_tasks_submitted_total",
    "Tasks sent to Celery, by queue.",
    ["queue"],
    registry=registry,
)
tasks_reused_total = Counter(
    "factorial_ws_tasks_reused_total",
    "Requests answered by the task of the same number instead of a new one, by queue.",
    ["queue"],
    registry=registry,
)
slow_consumers_total = Counter(
    "factorial_ws_slow_consumers_total",
    "Connections closed because the client did not read its results.",
    registry=registry,
)
tasks_waiting = Gauge(
    "factorial_ws_tasks_waiting",
    "Tasks whose result a client is waiting for.",
    registry=registry,
    multiprocess_mode="livesum",
)
result_seconds = Histogram(
    "factorial_ws_result_seconds",
    "Time from a factorial request to its result being sent, by queue.",
    ["queue"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=registry,
)
_PROCESSES = "factorial_ws_gateway_processes"
_SUBSCRIPTIONS_UP = "factorial_ws_result_subscriptions_up"
gateway_processes = Gauge(
    _PROCESSES,
    "Gateway processes serving this port.",
    registry=registry,
    multiprocess_mode="livesum",
)
result_subscriptions_up = Gauge(
    _SUBSCRIPTIONS_UP,
    "Gateway processes whose result subscription to Redis is up.",
    registry=registry,
    multiprocess_mode="livesum",
)


def error_label(message: str) -> str:
    """Bounded label values: 'Invalid request: <detail>' counts as one kind, and a catalog
    task's failure by its exception type, never by its message (TASK_ERROR_MESSAGES)."""
    if message.startswith("Invalid request"):
        return message.split(":", 1)[0]
    if message.startswith("Task failed: "):
        return ":".join(message.split(":", 2)[:2])
    return message


def multiprocess_dir() -> Path | None:
    folder = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    return Path(folder) if folder else None


def render() -> bytes:
    folder = multiprocess_dir()
    if folder is None:
        return generate_latest(registry)
    return generate_latest(_collect_all(folder))


def gateway_totals() -> tuple[int, int]:
    """Gateway processes, and how many of them have their result subscription up: summed over
    every live process (in a single process: its own values)."""
    folder = multiprocess_dir()
    source = registry if folder is None else _collect_all(folder)
    totals = {family.name: sum(s.value for s in family.samples) for family in source.collect()}
    return int(totals.get(_PROCESSES, 0)), int(totals.get(_SUBSCRIPTIONS_UP, 0))


def _collect_all(folder: Path) -> CollectorRegistry:
    _forget_dead_processes(folder)
    every_process = CollectorRegistry()
    multiprocess.MultiProcessCollector(every_process, path=str(folder))  # type: ignore[no-untyped-call]
    return every_process


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def _forget_dead_processes(folder: Path) -> None:
    """Drop the gauges of processes that have exited (a process killed outright could not)."""
    for path in folder.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match and not _alive(int(match[1])):
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(int(match[1]), str(folder))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        return stat_fields(pid)[0] != "Z"  # a zombie has exited, its parent just did not reap it
    except OSError:
        return False
