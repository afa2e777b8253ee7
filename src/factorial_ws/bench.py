"""`factorial-ws bench`: the system as its users feel it, next to raw Celery, in one run.

By default the bench starts a complete private system (Redis, one worker per queue, the gateway,
all as processes, as `factorial-ws up` does) and stops it at the end; with ``--url`` and
``REDIS_URL`` it targets a running one instead. Every figure is a median or percentile and is
reported with its reference measured in the same run, because the machines are shared and noisy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from . import bench_load as load
from .bench_report import (
    Row,
    all_met,
    latency_rows,
    median,
    render_json,
    render_markdown,
    render_table,
)
from .config import Config
from .constants import HARD_QUEUE, SOFT_QUEUE, WORKERS_KEY_PREFIX
from .probes import cpu_seconds, free_port, memory_kib, port_open
from .redis_server import RedisServer
from .server import raise_open_files_limit
from .supervisor import die_with_parent, gateway_command, worker_command

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0
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


# --- the system under test --------------------------------------------------------------------


@dataclass
class System:
    """The gateway URL and Redis URL the bench talks to, and what it may control."""

    url: str
    redis_url: str
    gateway_pid: int | None = None
    soft_worker: subprocess.Popen[bytes] | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )


def _wait(predicate: Any, what: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a process exited while waiting for {what}: {process.args!r}")
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _workers_alive(client: redis.Redis, queue: str) -> bool:
    return bool(client.zcount(WORKERS_KEY_PREFIX + queue, time.time() - 10, "+inf"))


def _worker_command(queue: str, concurrency: int, variant: Variant) -> list[str]:
    command = [*worker_command(queue, concurrency), *variant.worker_args]
    if variant.overrides:
        command[command.index("factorial_ws.celeryapp")] = "factorial_ws.bench_app"
    return command


@contextlib.contextmanager
def private_system(config: Config, work_dir: Path, variant: Variant | None = None) -> Iterator[System]:
    """Redis, a soft and a hard worker, and the gateway as processes, stopped at the end."""
    variant = variant or SHIPPED
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = RedisServer(work_dir / "redis", preexec_fn=die_with_parent(signal.SIGTERM))
    processes: list[subprocess.Popen[bytes]] = []
    server.start()
    try:
        port = free_port()
        config = config.replace(redis_url=server.url, ws_host="127.0.0.1", ws_port=port, ws_processes=1)
        if variant.concurrency:
            config = config.replace(soft_concurrency=variant.concurrency)
        env = {**os.environ, **config.to_env(), "PYTHONUNBUFFERED": "1"}
        env[load.SETTINGS_VARIABLE] = json.dumps(variant.overrides)
        client = redis.Redis.from_url(server.url)
        soft_command = _worker_command(SOFT_QUEUE, config.soft_concurrency, variant)
        hard_command = _worker_command(HARD_QUEUE, config.hard_concurrency, variant)
        soft = _spawn(soft_command, env, logs / "soft.log")
        processes += [soft, _spawn(hard_command, env, logs / "hard.log")]
        gateway = _spawn(gateway_command(), env, logs / "gateway.log")
        processes.append(gateway)
        _wait(lambda: all(_workers_alive(client, q) for q in (SOFT_QUEUE, HARD_QUEUE)), "workers", processes)
        _wait(lambda: port_open(port), "the gateway", processes)
        client.close()
        yield System(f"ws://127.0.0.1:{port}/", server.url, gateway.pid, soft, processes)
    finally:
        for process in reversed(processes):
            _stop(process)
        server.stop()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- scenarios --------------------------------------------------------------------------------


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


# --- the command --------------------------------------------------------------------------------


def run_bench(
    config: Config, *, quick: bool, output: str, url: str | None = None, plan: Plan | None = None
) -> int:
    """Run every scenario, print the table, write JSON/Markdown (and a PNG with matplotlib).
    Returns 0 when every target was met, 1 otherwise."""
    raise_open_files_limit()
    plan = plan or Plan.for_mode(quick)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    run = Run()
    started = time.monotonic()
    with _system(config, out, url) as system:
        for scenario in SCENARIOS:
            print(f"bench: {scenario.__doc__.splitlines()[0] if scenario.__doc__ else scenario.__name__}",
                  file=sys.stderr, flush=True)  # fmt: skip
            scenario(system, config, plan, run)
    meta = _meta(quick, url, time.monotonic() - started, run.notes)
    _write(out, run, meta)
    print(render_table(run.rows))
    for note in run.notes:
        print(f"  {note}")
    return 0 if all_met(run.rows) else 1


def run_sweep(config: Config, *, quick: bool, output: str, variants: tuple[Variant, ...] = VARIANTS) -> int:
    """Throughput and latency, gateway and raw Celery, for each worker-settings variant."""
    plan = Plan.for_mode(quick)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    defaults_raw: float | None = None
    per_round = max(1, plan.throughput_requests // plan.throughput_rounds)
    for variant in variants:
        print(f"bench sweep: {variant.name}", file=sys.stderr, flush=True)
        with (
            tempfile.TemporaryDirectory(prefix="factorial-ws-sweep-") as work,
            private_system(config, Path(work), variant) as system,
        ):
            celery_app = load.raw_app(config, system.redis_url)
            load.raw_latency(celery_app, 20)
            load.ws_latency(system.url, 20)
            raw: list[float] = []
            gateway: list[float] = []
            for _ in range(plan.throughput_rounds):
                raw.append(load.raw_throughput(celery_app, per_round))
                gateway.append(
                    load.ws_throughput(
                        system.url, per_round, plan.throughput_connections, plan.throughput_window
                    )[0]
                )
            raw_latency = load.raw_latency(celery_app, plan.latency_requests // 2)
            gateway_latency = load.ws_latency(system.url, plan.latency_requests // 2)
        defaults_raw = defaults_raw or median(raw)
        rows += [
            Row(variant.name, "raw Celery tasks/s", median(raw), "1/s", "raw, Celery defaults", defaults_raw),
            Row(variant.name, "gateway tasks/s", median(gateway), "1/s", "raw, Celery defaults",
                defaults_raw, "ratio_min", 0.9),
            Row(variant.name, "gateway tasks/s", median(gateway), "1/s", "raw, same settings", median(raw)),
            Row(variant.name, "gateway p50", median(gateway_latency), "ms", "raw, same settings",
                median(raw_latency)),
        ]  # fmt: skip
    meta = _meta(quick, None, 0.0, [f"{plan.throughput_rounds} rounds of {per_round} requests per variant"])
    (out / "sweep.json").write_text(render_json(rows, meta) + "\n")
    (out / "sweep.md").write_text(render_markdown(rows) + "\n")
    print(render_table(rows))
    return 0


@contextlib.contextmanager
def _system(config: Config, out: Path, url: str | None) -> Iterator[System]:
    if url is not None:
        yield System(url, config.redis_url)
        return
    with (
        tempfile.TemporaryDirectory(prefix="factorial-ws-bench-") as work,
        private_system(config, Path(work)) as system,
    ):
        yield system


def _meta(quick: bool, url: str | None, seconds: float, notes: list[str]) -> dict[str, Any]:
    return {
        "mode": "quick" if quick else "full",
        "target": url or "private system",
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "duration_s": round(seconds, 1),
        "notes": notes,
    }


def _write(out: Path, run: Run, meta: dict[str, Any]) -> None:
    (out / "bench.json").write_text(render_json(run.rows, meta) + "\n")
    notes = "".join(f"- {note}\n" for note in meta["notes"])
    header = f"Mode: {meta['mode']}, {meta['cpus']} CPUs, Python {meta['python']}, {meta['duration_s']} s\n\n"
    (out / "bench.md").write_text(header + render_markdown(run.rows) + "\n\n" + notes)
    (out / "samples.json").write_text(json.dumps(run.samples) + "\n")
    if not _plot(run.samples, out / "bench-latency.png"):
        print("bench: matplotlib is not installed; no plot", file=sys.stderr)


def _plot(samples: dict[str, list[float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for name, values in samples.items():
        ordered = sorted(values)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axis.plot(ordered, fractions, label=f"{name} (n={len(ordered)})")
    axis.set_xscale("log")
    axis.set_xlabel("factorial(5) round trip (ms, log scale)")
    axis.set_ylabel("fraction of requests")
    axis.set_title("Latency distributions (CDF)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
