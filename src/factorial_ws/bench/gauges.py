"""What the bench reads of the processes it measures, around a block of work: rates and the CPU
seconds spent meanwhile, peak memory, when a process has gone quiet, the gateway's own counts."""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from ..gateway.routes import RESPONSE_CACHE_S
from ..supervisor.probes import cpu_seconds, memory_kib

_TASKS_SUBMITTED = "factorial_ws_tasks_submitted_total"


@dataclass(frozen=True)
class Rate:
    """Requests per second, and the CPU seconds the side measured used meanwhile (the gateway
    process, or this process for the raw Celery client; None when it cannot be read)."""

    per_s: float
    cpu_s: float | None
    errors: int = 0


@contextlib.contextmanager
def timed(read_cpu: Callable[[], float] | None) -> Iterator[list[float]]:
    """The yielded list then holds the block's wall seconds and the CPU seconds ``read_cpu``
    counted meanwhile (NaN without it)."""
    timing: list[float] = []
    cpu_before = read_cpu() if read_cpu else 0.0
    started = time.perf_counter()
    yield timing
    timing.append(time.perf_counter() - started)
    timing.append(read_cpu() - cpu_before if read_cpu else math.nan)


def gateway_cpu(pid: int | None) -> Callable[[], float] | None:
    """Reads the CPU seconds process ``pid`` has used (None without a process)."""
    return None if pid is None else functools.partial(cpu_seconds, pid)


def rate_of(count: int, timing: list[float], errors: int = 0) -> Rate:
    seconds, cpu_s = timing
    return Rate(count / seconds, None if math.isnan(cpu_s) else cpu_s, errors)


@contextlib.contextmanager
def peak_rss_mib(pid: int | None) -> Iterator[list[float]]:
    """Samples the process's resident memory while the block runs; the yielded list then holds
    the growth of its peak over its size at the start, in MiB (empty without a process)."""
    growth: list[float] = []
    if pid is None:
        yield growth
        return
    start_kib = peak_kib = memory_kib(pid, "VmRSS")
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_kib
        while not stop.wait(0.02):
            peak_kib = max(peak_kib, memory_kib(pid, "VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield growth
    finally:
        stop.set()
        sampler.join()
        growth.append((peak_kib - start_kib) / 1024)


@contextlib.contextmanager
def cpu_s(pid: int | None) -> Iterator[list[float]]:
    """The yielded list then holds the CPU seconds the process used during the block."""
    used: list[float] = []
    before = cpu_seconds(pid) if pid is not None else 0.0
    yield used
    if pid is not None:
        used.append(cpu_seconds(pid) - before)


def quiet(pid: int | None, timeout_s: float = 5.0) -> None:
    """Wait until the process uses under a twentieth of a core (or ``timeout_s`` has passed), so
    that the previous round's leftovers (connections closing, subscriptions released) are not
    measured with the next round."""
    if pid is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.2)
        if cpu_seconds(pid) - before < 0.01:
            return


def tasks_sent(url: str, queue: str) -> float:
    """The gateway's count of tasks it sent to ``queue`` (GET /metrics), over every other label
    the counter may have (the task's name, for a catalog)."""
    # The gateway answers /metrics from a copy it keeps RESPONSE_CACHE_S: read right after the
    # previous read, the count would not have moved (a short round then "computed" nothing).
    time.sleep(RESPONSE_CACHE_S)
    http_url = url.replace("ws://", "http://").rstrip("/") + "/metrics"
    with urllib.request.urlopen(http_url, timeout=10) as response:
        return submitted_to(response.read().decode(), queue)


def submitted_to(metrics_text: str, queue: str) -> float:
    """The tasks sent to ``queue`` in a Prometheus text exposition, summed over other labels."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == _TASKS_SUBMITTED and sample.labels.get("queue") == queue
    )
