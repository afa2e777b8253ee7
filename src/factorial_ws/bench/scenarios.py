"""The benchmark's scenarios: each measures the gateway next to a reference in the same run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..config import Config
from ..processes import cpu_seconds, memory_kib
from . import load
from .report import Row, latency_rows, median
from .system import System

BIG_NUMBER = 1_000_000
# "Near zero": what is left is websockets' keepalive pings (WS_PING_INTERVAL), one per
# connection per interval.
WAITING_CPU_MAX_PERCENT = 5.0


@dataclass(frozen=True)
class Plan:
    """How much of each scenario to run."""

    latency_requests: int
    latency_rounds: int
    throughput_requests: int
    throughput_connections: int
    throughput_window: int
    throughput_rounds: int
    concurrency_connections: int
    concurrency_processes: int
    waiting_window_s: float
    big_repeats: int
    isolation_requests: int

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        """Quick: about a minute. Full: 10000 connections, and a CPU window as long as the
        default WS_PING_INTERVAL, so every connection's keepalive ping falls inside it."""
        if quick:
            return cls(300, 3, 2000, 20, 25, 3, 2000, 2, 2.0, 2, 300)
        return cls(1500, 5, 6000, 40, 25, 5, 10_000, 4, 20.0, 3, 1000)


@dataclass
class Run:
    rows: list[Row] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def scenario_latency(system: System, config: Config, plan: Plan, run: Run) -> None:
    """Sequential factorial(5): over one WebSocket, and through a raw Celery client."""
    celery_app = load.raw_app(config, system.redis_url)
    gateway: list[float] = []
    raw: list[float] = []
    per_round = max(1, plan.latency_requests // plan.latency_rounds)
    load.raw_latency(celery_app, 20)  # warm up both paths
    load.ws_latency(system.url, 20)
    for _ in range(plan.latency_rounds):
        raw += load.raw_latency(celery_app, per_round)
        gateway += load.ws_latency(system.url, per_round)
    run.samples["gateway (WebSocket)"] = gateway
    run.samples["raw Celery"] = raw
    run.rows += latency_rows(
        "1 latency factorial(5)", gateway, "raw Celery delay().get()", raw, p50_ratio_max=1.3
    )


def scenario_throughput(system: System, config: Config, plan: Plan, run: Run) -> None:
    """factorial(5) from many connections with many in flight each, and from raw Celery."""
    celery_app = load.raw_app(config, system.redis_url)
    gateway: list[float] = []
    raw: list[float] = []
    errors = 0
    per_round = max(1, plan.throughput_requests // plan.throughput_rounds)
    for _ in range(plan.throughput_rounds):
        raw.append(load.raw_throughput(celery_app, per_round))
        rate, failed = load.ws_throughput(
            system.url, per_round, plan.throughput_connections, plan.throughput_window
        )
        gateway.append(rate)
        errors += failed
    scenario = "2 throughput factorial(5)"
    run.rows.append(
        Row(scenario, "tasks/s (median)", median(gateway), "1/s", "raw Celery", median(raw), "ratio_min", 0.9)
    )
    run.rows.append(Row(scenario, "errors", errors, "", check="value_max", limit=0))
    run.notes.append(
        f"throughput: {plan.throughput_rounds} rounds of {per_round} requests; gateway with "
        f"{plan.throughput_connections} connections x {plan.throughput_window} in flight"
    )


@contextlib.contextmanager
def _paused(process: subprocess.Popen[bytes] | None) -> Iterator[Callable[[], None]]:
    """SIGSTOP ``process`` (if any) for the block; the yielded function resumes it early."""

    def resume() -> None:
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)

    if process is not None:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        yield resume
    finally:
        resume()


def scenario_concurrency(system: System, config: Config, plan: Plan, run: Run) -> None:
    """N connections, one task in flight each, while the soft worker is paused; then resumed."""
    scenario = f"3 concurrency {plan.concurrency_connections} conns"
    count = plan.concurrency_connections
    waiting_cpu: float | None = None
    with (
        _paused(system.soft_worker) as resume,
        load.ConcurrencyLoad(system.url, count, plan.concurrency_processes) as crowd,
    ):
        acked = crowd.wait_acked()
        if system.soft_worker is not None and system.gateway_pid is not None:
            before = cpu_seconds(system.gateway_pid)
            time.sleep(plan.waiting_window_s)  # every task is queued: the gateway only waits
            waiting_cpu = 100 * (cpu_seconds(system.gateway_pid) - before) / plan.waiting_window_s
        resume()
        resumed = time.monotonic()
        outcome = crowd.wait_done()
        drain_s = time.monotonic() - resumed
    run.rows += [
        Row(scenario, "connections open + acked", acked.acked, "", check="value_min", limit=count),
        Row(scenario, "results delivered", outcome.delivered, "", check="value_min", limit=count),
        Row(scenario, "errors", acked.errors + outcome.errors, "", check="value_max", limit=0),
    ]
    if system.gateway_pid is not None:
        peak_mib = memory_kib(system.gateway_pid) / 1024
        run.rows.append(Row(scenario, "gateway peak RSS", peak_mib, "MiB", check="value_max", limit=1024))
    if waiting_cpu is not None:
        run.rows.append(
            Row(scenario, "gateway CPU while tasks wait", waiting_cpu, "% of a core", check="value_max",
                limit=WAITING_CPU_MAX_PERCENT)
        )  # fmt: skip
    run.rows.append(Row(scenario, "connect + ack all", acked.seconds, "s"))
    run.rows.append(Row(scenario, "drain after worker resumes", drain_s, "s"))


def scenario_big(system: System, config: Config, plan: Plan, run: Run) -> None:
    """factorial(1000000) end to end vs gmpy2's factorial and decimal digits alone."""
    reference: list[float] = []
    gateway: list[float] = []
    for _ in range(plan.big_repeats):  # interleaved, so a burst of load elsewhere hits both
        seconds, digits = load.bare_gmpy2(BIG_NUMBER)
        reference.append(seconds)
        gateway.append(load.ws_big(system.url, BIG_NUMBER, digits))
    run.rows.append(
        Row("4 factorial(1000000)", "end to end (median)", median(gateway), "s", "bare gmpy2",
            median(reference), "ratio_max", 2.0)
    )  # fmt: skip


def scenario_isolation(system: System, config: Config, plan: Plan, run: Run) -> None:
    """factorial(5) latency while another client keeps the hard queue saturated."""
    samples, hard_done = load.ws_latency_under_hard_load(system.url, plan.isolation_requests)
    run.samples["gateway, hard queue saturated"] = samples
    baseline = run.samples.get("gateway (WebSocket)", [])
    run.rows += latency_rows(
        "5 isolation (hard saturated)", samples, "idle gateway", baseline, p99_max_ms=100
    )
    run.notes.append(f"isolation: {hard_done} large factorials finished on the hard queue meanwhile")


SCENARIOS = (scenario_latency, scenario_throughput, scenario_concurrency, scenario_big, scenario_isolation)
