"""The benchmark's scenarios: each measures the gateway next to a reference in the same run."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import gmpy2

from ..config import Config
from ..processes import (
    cpu_seconds,
    free_port,
    gateway_command,
    memory_kib,
    port_open,
    start_child,
    stop_child,
    wait_until,
)
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
    crowd_big_clients: int = 1000

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        """Quick: about a minute. Full: 10000 connections, and a CPU window as long as the
        default WS_PING_INTERVAL, so every connection's keepalive ping falls inside it."""
        if quick:
            return cls(300, 3, 2000, 20, 25, 3, 2000, 2, 2.0, 2, 300, 200)
        return cls(1500, 5, 6000, 40, 25, 5, 10_000, 4, 20.0, 3, 1000, 1000)


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
    sent_before = _tasks_sent(system.url, "soft")
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
    # Every request computed, as raw Celery computes each: no result reused (RESULT_REUSE=0).
    computed = _tasks_sent(system.url, "soft") - sent_before
    run.rows.append(
        Row(
            scenario,
            "tasks computed",
            computed,
            "",
            check="value_min",
            limit=per_round * plan.throughput_rounds,
        )
    )
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


def scenario_crowd_big(system: System, config: Config, plan: Plan, run: Run) -> None:
    """Many clients ask for the same 1000000! at once, through a gateway that reuses results."""
    scenario = f"6 {plan.crowd_big_clients} clients, same {BIG_NUMBER}!"
    with _reusing_gateway(system, config) as (url, pid):
        # One client first, on a number as large (and not computed yet): the reference.
        solo_digits = str(gmpy2.fac(BIG_NUMBER - 1).digits())
        with _peak_rss_mib(pid) as solo_rss, _cpu_s(pid) as solo_cpu:
            solo_s = load.ws_big(url, BIG_NUMBER - 1, solo_digits)
        digits_sha256 = hashlib.sha256(gmpy2.fac(BIG_NUMBER).digits().encode()).hexdigest()
        tasks_before = _tasks_sent(url, "hard")
        with (
            _peak_rss_mib(pid) as crowd_rss,
            _cpu_s(pid) as crowd_cpu,
            load.ConcurrencyLoad(
                url,
                plan.crowd_big_clients,
                plan.concurrency_processes,
                number=BIG_NUMBER,
                digits_sha256=digits_sha256,
            ) as crowd,
        ):
            acked = crowd.wait_acked()
            done = crowd.wait_done()
        computed = _tasks_sent(url, "hard") - tasks_before
    count = plan.crowd_big_clients
    run.rows += [
        Row(scenario, "exact results delivered", done.delivered, "", check="value_min", limit=count),
        Row(scenario, "errors", acked.errors + done.errors, "", check="value_max", limit=0),
        Row(scenario, "computations", computed, "", check="value_max", limit=1),
        Row(scenario, "time to the last result", done.seconds, "s", "one client", solo_s),
    ]
    if crowd_rss and solo_rss and crowd_cpu and solo_cpu:
        run.rows += [
            Row(scenario, "gateway RSS growth (peak)", crowd_rss[0], "MiB", "one client", solo_rss[0],
                "value_max", 256),
            Row(scenario, "gateway CPU", crowd_cpu[0], "s", "one client", solo_cpu[0]),
        ]  # fmt: skip
    run.notes.append(
        f"crowd: {count} connections over {plan.concurrency_processes} processes, each reading its "
        f"5.6 MB reply fragment by fragment; the gateway with RESULT_REUSE=1"
    )


_CROWD_PATIENCE_S = 600.0


@contextlib.contextmanager
def _reusing_gateway(system: System, config: Config) -> Iterator[tuple[str, int | None]]:
    """A gateway with RESULT_REUSE=1 on the system's Redis (the bench's own runs with reuse off,
    so that every request is computed, as with raw Celery); a running system as it is."""
    if system.log_dir is None:
        yield system.url, system.gateway_pid
        return
    port = free_port()
    reusing = config.replace(
        redis_url=system.redis_url,
        ws_host="127.0.0.1",
        ws_port=port,
        ws_processes=1,
        result_reuse=True,
        # The crowd's processes share the machine's cores with the gateway and the workers, so
        # each of its connections reads far slower than a client of its own would: the gateway
        # must not drop them as slow consumers (nor time their keepalive pongs out) meanwhile.
        slow_consumer_timeout_s=_CROWD_PATIENCE_S,
        ping_timeout_s=_CROWD_PATIENCE_S,
    )
    env = {**os.environ, **reusing.to_env()}
    gateway = start_child(gateway_command(), env, log_path=system.log_dir / "gateway-reuse.log")
    try:
        wait_until(lambda: port_open(port), 60, "the reusing gateway", watch=[gateway])
        yield f"ws://127.0.0.1:{port}/", gateway.pid
    finally:
        stop_child(gateway)


@contextlib.contextmanager
def _peak_rss_mib(pid: int | None) -> Iterator[list[float]]:
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
def _cpu_s(pid: int | None) -> Iterator[list[float]]:
    """The yielded list then holds the CPU seconds the process used during the block."""
    used: list[float] = []
    before = cpu_seconds(pid) if pid is not None else 0.0
    yield used
    if pid is not None:
        used.append(cpu_seconds(pid) - before)


def _tasks_sent(url: str, queue: str) -> float:
    """The gateway's count of tasks it sent to ``queue`` (GET /metrics)."""
    http_url = url.replace("ws://", "http://").rstrip("/") + "/metrics"
    with urllib.request.urlopen(http_url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f'factorial_ws_tasks_submitted_total{{queue="{queue}"}}'):
                return float(line.split()[-1])
    return 0.0


SCENARIOS = (
    scenario_latency,
    scenario_throughput,
    scenario_concurrency,
    scenario_big,
    scenario_isolation,
    scenario_crowd_big,
)
