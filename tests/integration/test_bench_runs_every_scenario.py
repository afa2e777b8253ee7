"""A tiny run of the benchmark against its own private system: every scenario runs (the catalog
task's too, with the wordcount example's stock worker), every request is answered, and the table
is written as JSON, Markdown and (with matplotlib) a plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from factorial_ws.bench import run_bench
from factorial_ws.bench.plan import Plan
from factorial_ws.config import Config

pytestmark = pytest.mark.long  # 20 s or more: started first (conftest.py)

# The smallest run of each scenario that still reports every figure asserted below. Where a
# figure is a CPU time per request, the work stays large enough for the gateway to use a few
# clock ticks of CPU (10 ms each; below one tick it would read 0): 100 throughput requests, 400
# acks, 400 lookups, in one round each (a round's fixed costs, a warm-up and a wait for the
# gateway to go quiet, come once). A crowd of 4 on 2 client processes still asks for one
# 1000000! from several connections at once, and from each process.
TINY = Plan(
    latency_requests=10,
    latency_rounds=1,
    throughput_requests=100,
    throughput_connections=4,
    throughput_window=5,
    throughput_rounds=1,
    concurrency_connections=20,
    concurrency_processes=2,
    waiting_window_s=0.1,
    big_repeats=1,
    isolation_requests=5,
    crowd_big_clients=4,
    acks_requests=400,
    acks_rounds=1,
    acks_connections=4,
    acks_window=10,
    raw_submissions=100,
    stored_results=10,
    lookups_requests=400,
    lookups_rounds=1,
    lookups_connections=4,
    lookups_window=10,
    raw_lookups=80,
)


def test_a_tiny_bench_runs_every_scenario_and_writes_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    run_bench(Config(), quick=True, output=str(out), plan=TINY)  # targets are not judged here

    report = json.loads((out / "bench.json").read_text())
    rows = {(row["scenario"], row["metric"]): row for row in report["rows"]}
    scenarios = {scenario.split()[0] for scenario, _ in rows}
    assert scenarios == {"1", "2", "3", "4", "5", "6", "7", "8", "9"}
    concurrency = f"3 concurrency {TINY.concurrency_connections} conns"
    assert rows[(concurrency, "results delivered")]["value"] == TINY.concurrency_connections
    assert rows[(concurrency, "errors")]["value"] == 0
    assert rows[("2 throughput factorial(5)", "errors")]["value"] == 0
    computed = rows[("2 throughput factorial(5)", "tasks computed")]["value"]
    assert computed == TINY.throughput_requests  # none reused
    latency = rows[("1 latency factorial(5)", "p50")]
    assert latency["value"] > 0 and latency["reference"] > 0 and latency["ratio"] > 0
    cpu = rows[("2 throughput factorial(5)", "gateway CPU per request")]
    assert cpu["value"] > 0 and cpu["reference"] > 0
    acks = "7 acks/s, no worker"
    assert rows[(acks, "errors")]["value"] == 0  # every submission acked, none refused
    assert rows[(acks, "acks/s (median)")]["value"] > 0 and rows[(acks, "acks/s (median)")]["reference"] > 0
    assert rows[(acks, "gateway CPU per ack")]["value"] > 0
    stored = "8 stored results/s"
    assert rows[(stored, "errors")]["value"] == 0  # every lookup brought its exact result
    assert rows[(stored, "results/s (median)")]["reference"] > 0
    assert rows[(stored, "gateway CPU per lookup")]["value"] > 0
    assert rows[(concurrency, "gateway peak RSS")]["value"] > 0
    assert rows[("4 factorial(1000000)", "end to end (median)")]["reference"] > 0
    crowd = f"6 {TINY.crowd_big_clients} clients, same 1000000!"
    assert rows[(crowd, "exact results delivered")]["value"] == TINY.crowd_big_clients
    assert rows[(crowd, "computations")]["value"] == 1
    assert rows[(crowd, "gateway RSS growth (peak)")]["reference"] is not None
    # The wordcount example's count_words through its catalog and a stock worker, every call
    # answered with its exact counts (a dict), each computed; beside factorial(5) and raw Celery.
    catalog = "9 catalog task count_words"
    assert rows[(catalog, "errors")]["value"] == 0
    assert rows[(catalog, "tasks computed")]["value"] == TINY.throughput_requests  # none shared
    catalog_cpu = rows[(catalog, "gateway CPU per request")]
    assert catalog_cpu["value"] > 0 and catalog_cpu["reference"] > 0  # and factorial(5)'s
    assert rows[(catalog, "raw Celery client CPU per request")]["value"] > 0
    assert (
        rows[(catalog, "tasks/s (median)")]["value"] > 0
        and rows[(catalog, "tasks/s (median)")]["reference"] > 0
    )
    catalog_p50 = rows[(catalog, "p50")]
    assert catalog_p50["value"] > 0 and catalog_p50["reference"] > 0
    assert rows[(catalog, "p50 next to factorial(5)")]["reference"] > 0

    markdown = (out / "bench.md").read_text()
    assert "| 1 latency factorial(5) | p50 |" in markdown
    assert "raw Celery" in capsys.readouterr().out  # the table was printed
    samples = json.loads((out / "samples.json").read_text())
    latency_samples = TINY.latency_requests
    assert len(samples["raw Celery"]) == latency_samples
    assert len(samples["gateway (WebSocket)"]) == latency_samples
    assert len(samples["gateway (WebSocket), count_words"]) == latency_samples
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "bench-latency.png").read_bytes().startswith(b"\x89PNG")
