"""The benchmark's scenarios: each measures the gateway next to a reference in the same run."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import gmpy2
from celery import Celery

from ..config import Config
from ..supervisor.probes import memory_kib
from . import catalog_task, load
from .ceilings import scenario_acks, scenario_stored_results
from .crowd import ConcurrencyLoad
from .extra_gateways import reusing_gateway
from .gauges import Rate, cpu_s, peak_rss_mib, tasks_sent
from .plan import Plan
from .reference import (
    bare_gmpy2,
    raw_app,
    raw_call_latency,
    raw_call_throughput,
    raw_latency,
    raw_throughput,
)
from .report import Row, Run, cpu_ms_per, latency_rows, median
from .system import System

BIG_NUMBER = 1_000_000
# "Near zero": what is left is websockets' keepalive pings (WS_PING_INTERVAL), one per
# connection per interval.
WAITING_CPU_MAX_PERCENT = 5.0
# Issue 11's targets: the gateway should be the cheapest part of the request path.
GATEWAY_CPU_PER_REQUEST_MAX_MS = 0.4  # factorial(5), ack and result, in the throughput scenario
CONNECT_AND_ACK_MAX_S = 6.0  # every connection of scenario 3 open and its request acked


def scenario_latency(system: System, config: Config, plan: Plan, run: Run) -> None:
    """Sequential factorial(5): over one WebSocket, and through a raw Celery client."""
    celery_app = raw_app(config, system.redis_url)
    gateway: list[float] = []
    raw: list[float] = []
    per_round = max(1, plan.latency_requests // plan.latency_rounds)
    raw_latency(celery_app, 20)  # warm up both paths
    load.ws_latency(system.url, 20)
    for _ in range(plan.latency_rounds):
        raw += raw_latency(celery_app, per_round)
        gateway += load.ws_latency(system.url, per_round)
    run.samples["gateway (WebSocket)"] = gateway
    run.samples["raw Celery"] = raw
    run.rows += latency_rows(
        "1 latency factorial(5)", gateway, "raw Celery delay().get()", raw, p50_ratio_max=1.1
    )


def scenario_throughput(system: System, config: Config, plan: Plan, run: Run) -> None:
    """factorial(5) from many connections with many in flight each, and from raw Celery."""
    celery_app = raw_app(config, system.redis_url)
    gateway: list[Rate] = []
    raw: list[Rate] = []
    per_round = max(1, plan.throughput_requests // plan.throughput_rounds)
    sent_before = tasks_sent(system.url, "soft")
    for _ in range(plan.throughput_rounds):
        raw.append(raw_throughput(celery_app, per_round))
        gateway.append(
            load.ws_throughput(
                system.url, per_round, plan.throughput_connections, plan.throughput_window, system.gateway_pid
            )
        )
    scenario = "2 throughput factorial(5)"
    run.rows.append(
        Row(scenario, "tasks/s (median)", median([r.per_s for r in gateway]), "1/s", "raw Celery",
            median([r.per_s for r in raw]), "ratio_min", 1.0)
    )  # fmt: skip
    run.rows.append(Row(scenario, "errors", sum(r.errors for r in gateway), "", check="value_max", limit=0))
    requests = per_round * plan.throughput_rounds
    gateway_ms = cpu_ms_per([r.cpu_s for r in gateway], requests)
    raw_ms = cpu_ms_per([r.cpu_s for r in raw], requests)
    if gateway_ms is not None:
        run.rows.append(
            Row(scenario, "gateway CPU per request", gateway_ms, "ms", "raw Celery client CPU per request",
                raw_ms, "value_max", GATEWAY_CPU_PER_REQUEST_MAX_MS)
        )  # fmt: skip
    # Every request computed, as raw Celery computes each: no result reused (RESULT_REUSE=0).
    computed = tasks_sent(system.url, "soft") - sent_before
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
    waiting_cpu: list[float] = []
    with (
        _paused(system.soft_worker) as resume,
        ConcurrencyLoad(system.url, count, plan.concurrency_processes) as crowd,
    ):
        # The crowd's processes are started but still importing: every connection is in here.
        with cpu_s(system.gateway_pid) as connecting_cpu:
            acked = crowd.wait_acked()
        if system.soft_worker is not None:
            with cpu_s(system.gateway_pid) as waiting_cpu:
                time.sleep(plan.waiting_window_s)  # every task is queued: the gateway only waits
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
    if waiting_cpu:
        waiting_percent = 100 * waiting_cpu[0] / plan.waiting_window_s
        run.rows.append(
            Row(scenario, "gateway CPU while tasks wait", waiting_percent, "% of a core", check="value_max",
                limit=WAITING_CPU_MAX_PERCENT)
        )  # fmt: skip
    run.rows.append(
        Row(scenario, "connect + ack all", acked.seconds, "s", check="value_max", limit=CONNECT_AND_ACK_MAX_S)
    )
    if connecting_cpu:
        # The crowd's processes share the cores: what the gateway itself spends per connection.
        connecting_ms = 1000 * connecting_cpu[0] / count
        run.rows.append(Row(scenario, "gateway CPU per connection, connect + ack", connecting_ms, "ms"))
    run.rows.append(Row(scenario, "drain after worker resumes", drain_s, "s"))


def scenario_big(system: System, config: Config, plan: Plan, run: Run) -> None:
    """factorial(1000000) end to end vs gmpy2's factorial and decimal digits alone."""
    reference: list[float] = []
    gateway: list[float] = []
    for _ in range(plan.big_repeats):  # interleaved, so a burst of load elsewhere hits both
        seconds, digits = bare_gmpy2(BIG_NUMBER)
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
    with reusing_gateway(system, config) as (url, pid):
        # One client first, on a number as large (and not computed yet): the reference.
        solo_digits = str(gmpy2.fac(BIG_NUMBER - 1).digits())
        with peak_rss_mib(pid) as solo_rss, cpu_s(pid) as solo_cpu:
            solo_s = load.ws_big(url, BIG_NUMBER - 1, solo_digits)
        digits_sha256 = hashlib.sha256(gmpy2.fac(BIG_NUMBER).digits().encode()).hexdigest()
        tasks_before = tasks_sent(url, "hard")
        with (
            peak_rss_mib(pid) as crowd_rss,
            cpu_s(pid) as crowd_cpu,
            ConcurrencyLoad(
                url,
                plan.crowd_big_clients,
                plan.concurrency_processes,
                number=BIG_NUMBER,
                digits_sha256=digits_sha256,
            ) as crowd,
        ):
            acked = crowd.wait_acked()
            done = crowd.wait_done()
        computed = tasks_sent(url, "hard") - tasks_before
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


def scenario_catalog_task(system: System, config: Config, plan: Plan, run: Run) -> None:
    """A catalog task, count_words (dict result), next to factorial(5) and raw Celery."""
    scenario = f"9 catalog task {catalog_task.TASK}"
    root = catalog_task.example_root()
    if system.log_dir is None or root is None:
        why = "against a running system" if root else "outside a source checkout (no examples/)"
        run.notes.append(f"catalog task: skipped {why}")
        return
    calls = catalog_task.count_words(root)
    with (
        catalog_task.catalog_gateway(system, config, root, system.log_dir) as catalog,
        catalog_task.raw_catalog_app(system.redis_url) as celery_app,
    ):
        _catalog_latency(scenario, system, catalog.url, calls, celery_app, plan, run)
        sent_before = tasks_sent(catalog.url, calls.queue)
        requests = _catalog_throughput(scenario, system, catalog, calls, celery_app, plan, run)
        computed = tasks_sent(catalog.url, calls.queue) - sent_before
    # Every throughput request computed, as raw Celery computes each: none shared another's.
    run.rows.append(Row(scenario, "tasks computed", computed, "", check="value_min", limit=requests))
    run.notes.append(
        f"catalog task: {catalog_task.CATALOG} on a gateway process of its own, a stock worker "
        f"(`celery -A {catalog_task.WORKER_APP} worker`, {config.soft_concurrency} pool processes, "
        f"as the soft worker) on the system's Redis; a text of its own per request (no shared "
        f"result); factorial(5) on the system's gateway and raw Celery `send_task().get()` in the "
        f"same rounds, alternating"
    )


def _catalog_latency(
    scenario: str, system: System, url: str, calls: catalog_task.CountWords, celery_app: Celery,
    plan: Plan, run: Run,
) -> None:  # fmt: skip
    """Sequential count_words through the library's ``call``, factorial(5) and raw Celery."""
    raw: list[float] = []
    gateway: list[float] = []
    factorial: list[float] = []
    per_round = max(1, plan.latency_requests // plan.latency_rounds)
    raw_call_latency(celery_app, calls, 20)  # warm up every path
    load.ws_latency(url, 20, calls.ask)
    for _ in range(plan.latency_rounds):
        raw += raw_call_latency(celery_app, calls, per_round)
        gateway += load.ws_latency(url, per_round, calls.ask)
        factorial += load.ws_latency(system.url, per_round)
    run.samples[f"gateway (WebSocket), {catalog_task.TASK}"] = gateway
    run.samples[f"raw Celery, {catalog_task.TASK}"] = raw
    run.rows += latency_rows(scenario, gateway, "raw Celery send_task().get()", raw)
    run.rows.append(
        Row(scenario, "p50 next to factorial(5)", median(gateway), "ms", "factorial(5), same rounds",
            median(factorial))
    )  # fmt: skip


def _catalog_throughput(
    scenario: str, system: System, catalog: catalog_task.CatalogGateway, calls: catalog_task.CountWords,
    celery_app: Celery, plan: Plan, run: Run,
) -> int:  # fmt: skip
    """Scenario 2's load of count_words, of factorial(5) and of raw Celery, rounds alternating;
    returns the count_words requests sent."""
    gateway: list[Rate] = []
    factorial: list[Rate] = []
    raw: list[Rate] = []
    per_round = max(1, plan.throughput_requests // plan.throughput_rounds)
    connections, window = plan.throughput_connections, plan.throughput_window
    for _ in range(plan.throughput_rounds):
        raw.append(raw_call_throughput(celery_app, calls, per_round))
        gateway.append(
            load.ws_throughput(catalog.url, per_round, connections, window, catalog.pid, calls.ask)
        )
        factorial.append(load.ws_throughput(system.url, per_round, connections, window, system.gateway_pid))
    requests = per_round * plan.throughput_rounds
    gateway_ms = cpu_ms_per([r.cpu_s for r in gateway], requests)
    factorial_ms = cpu_ms_per([r.cpu_s for r in factorial], requests)
    raw_ms = cpu_ms_per([r.cpu_s for r in raw], requests)
    run.rows += [
        Row(scenario, "tasks/s (median)", median([r.per_s for r in gateway]), "1/s", "raw Celery",
            median([r.per_s for r in raw])),
        Row(scenario, "tasks/s next to factorial(5)", median([r.per_s for r in gateway]), "1/s",
            "factorial(5), same rounds", median([r.per_s for r in factorial])),
        Row(scenario, "gateway CPU per request", gateway_ms or 0.0, "ms", "factorial(5), same rounds",
            factorial_ms),
        Row(scenario, "raw Celery client CPU per request", raw_ms or 0.0, "ms"),
        Row(scenario, "errors", sum(r.errors for r in gateway + factorial), "", check="value_max", limit=0),
    ]  # fmt: skip
    return requests


SCENARIOS = (
    scenario_latency,
    scenario_throughput,
    scenario_concurrency,
    scenario_big,
    scenario_isolation,
    scenario_crowd_big,
    scenario_acks,
    scenario_stored_results,
    scenario_catalog_task,
)
